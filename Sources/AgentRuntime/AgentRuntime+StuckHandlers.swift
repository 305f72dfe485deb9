extension AgentRuntime {
    /// The exit status ``StuckAction/exit(status:)`` uses for `agentd run`: 75 (`EX_TEMPFAIL`,
    /// "try again later"): the runtime ended itself because it could not serve, and a restart
    /// serves again.
    public static let stuckExitStatus: Int32 = 75

    /// A handler (or a plugin's `create`/`restore`/`snapshot`) that has been running past the
    /// handler timeout without returning.
    public struct StuckHandler: Sendable, Hashable, CustomStringConvertible {
        /// The plugin, as `name version`.
        public var plugin: String
        public var agentType: String
        /// The agent's key (a long one cut to its first 200 characters).
        public var agentKey: String
        /// The message type being handled; nil when the plugin's code runs outside a handler
        /// (creating, restoring or saving the agent).
        public var messageType: String?
        /// How long it has been running.
        public var running: Duration

        public var description: String {
            let what = messageType.map { "message type '\($0)'" } ?? "not in a handler (creating, restoring or saving the agent)"
            return "plugin \(plugin), agent type \(agentType), \(what), running \(StateRequestServer.text(running))"
        }
    }

    /// What the runtime does once it can no longer serve: every handler thread, up to
    /// ``Configuration/maxWorkers``, is stuck in plugin code past the handler timeout.
    ///
    /// Before that it keeps serving: a handler stuck past the handler timeout has its RPC
    /// answered with an error, RPCs to its agent are refused at once until it returns, and
    /// another thread takes its place (up to ``Configuration/maxWorkers``), so healthy agents
    /// keep being served.
    public enum StuckAction: Sendable {
        /// Log it (one critical line naming each stuck plugin, agent type and message type) and
        /// go on: the runtime still reads from its host and answers what it can with errors
        /// (RPCs wait in mailboxes until the host's RPC deadline). The default for a runtime
        /// made in code (tests, embedders).
        case log
        /// Log it, then end the process with `status` at once (`_exit`: no plugin is unloaded
        /// under a running handler) — what `agentd run` does, with ``stuckExitStatus``, so
        /// that its supervisor restarts the runtime.
        case exit(status: Int32)
        /// Log it, then call `handler` (once) with the stuck handlers.
        case call(@Sendable ([StuckHandler]) -> Void)
    }
}
