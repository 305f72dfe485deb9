import AgentConfig

extension AgentRuntime {
    /// What of the runtime's configuration may change while it serves (`agentd run` re-reads
    /// its INI file on SIGHUP; ``ConfigurationReload`` says which keys these are).
    public struct LiveSettings: Sendable, Equatable {
        /// `[runtime] mailbox_limit`: applies to the next message queued for any agent; a
        /// mailbox already past a lowered limit keeps its messages and refuses new ones.
        public var mailboxLimit: Int
        /// `[runtime] rpc_timeout`: applies to RPCs the plugins send from now on; those already
        /// waiting keep the deadline they were sent with.
        public var rpcTimeout: Duration
        /// Every `[plugin.NAME]` section: the plugins' `setting()` answers with the new values
        /// from now on (a value handed out before stays valid until the plugin is unloaded), and
        /// plugins loaded later get them.
        public var pluginSettings: [String: [String: String]]

        public init(mailboxLimit: Int, rpcTimeout: Duration, pluginSettings: [String: [String: String]]) {
            self.mailboxLimit = mailboxLimit
            self.rpcTimeout = rpcTimeout
            self.pluginSettings = pluginSettings
        }

        /// The live settings an INI file says.
        public init(_ file: RuntimeConfiguration) {
            self.init(mailboxLimit: file.mailboxLimit, rpcTimeout: file.rpcTimeout, pluginSettings: file.pluginSettings)
        }
    }

    /// Applies `settings` while the runtime serves (``configuration`` keeps what it started
    /// with). Plugin settings are taken between two plugin rescans. Does nothing before
    /// ``start()`` or after ``shutdown()``.
    /// - Returns: each plugin in service whose settings changed, with the changed keys.
    @discardableResult
    public func reconfigure(_ settings: LiveSettings) async -> [String: [String]] {
        guard let parts = reconfigurableParts else { return [:] }
        parts.router.mailboxLimit = settings.mailboxLimit
        parts.requests.timeout = settings.rpcTimeout
        return await parts.reloader.replacePluginSettings(settings.pluginSettings)
    }
}
