/// Why a plugin was refused: the file and the reason, in words a user can act on.
public struct PluginLoadError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let value: String
        private init(_ value: String) { self.value = value }
        /// Not readable, or not a loadable shared library.
        public static let notLoadable = Code("not loadable")
        /// No `agentd_plugin_entry` symbol: not an agentd plugin.
        public static let noEntry = Code("no entry symbol")
        /// Built for another ABI major version.
        public static let abiMismatch = Code("ABI mismatch")
        /// The entry returned NULL.
        public static let initFailed = Code("init failed")
        /// The descriptor breaks the header's rules (sizes, names, tables).
        public static let invalidDescriptor = Code("invalid descriptor")
        /// An agent type is already served by another loaded plugin.
        public static let duplicateAgentType = Code("duplicate agent type")
        /// A new version's `restore` refuses the state of a live agent (hot reload).
        public static let stateRefused = Code("state refused")
        public var description: String { value }
    }

    public var code: Code
    public var path: String
    public var reason: String
    /// The content hash of the bytes refused, when they were read (the file may have changed
    /// since).
    public var contentHash: String? = nil

    public var description: String { "plugin \(path) refused (\(code)): \(reason)" }
}

