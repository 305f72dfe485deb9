/// `[state]` and `[agents]`: where agents' state is kept, and when idle agents are retired.
public struct StateSettings: Sendable, Hashable {
    /// `[state] store`.
    public enum Store: String, Sendable, Hashable, CaseIterable {
        /// One SQLite file (`[state] path`).
        case sqlite
        /// NATS JetStream key-value (`[state] nats`, or `[cluster] nats`): state that can follow a
        /// shared agent type's keys to runtimes on other machines.
        case nats
        /// No store: state lives in the plugins' memory only, and is lost when the runtime
        /// stops or an agent is retired.
        case none
    }

    /// `[state] sync`: what a committed checkpoint survives.
    public enum Sync: String, Sendable, Hashable, CaseIterable {
        /// The runtime being killed (the write is in the operating system's hands).
        case normal
        /// A power loss too (every commit waits for the disk).
        case full
    }

    public static let defaultPath = "state/agents.db"
    public static let defaultIdle: Duration = .seconds(300)
    public static let defaultMaxResident = 100_000
    public static let maxResidentRange = 1...100_000_000
    /// The default `[agents] max_resident_bytes`: 256 MiB.
    public static let defaultMaxResidentBytes = 256 << 20
    public static let largestMaxResidentBytes = 64 << 30

    public var store: Store
    /// `[state] path`: the SQLite file, resolved against the INI file's folder when written
    /// relative; nil: ``defaultPath`` relative to the INI file's folder (or the current
    /// folder without one).
    public var path: String?
    public var sync: Sync
    /// `[state] nats = URL, URL`: the NATS servers of `store = nats` (nil: `[cluster] nats`).
    public var nats: [String]?
    /// `[agents] idle_seconds`: an agent that received nothing for this long is retired
    /// (final checkpoint, then `destroy`). Zero: never for idleness.
    public var idle: Duration
    /// `[agents] max_resident`: at most this many agent instances stay resident; past it the
    /// least recently used are retired.
    public var maxResident: Int
    /// `[agents] max_resident_bytes`: at most this many bytes held by resident agents (their
    /// ids and the state they hold); past it the least recently used are retired.
    public var maxResidentBytes: Int = Self.defaultMaxResidentBytes

    public init(store: Store = .sqlite, path: String? = nil, sync: Sync = .normal, idle: Duration = Self.defaultIdle,
                maxResident: Int = Self.defaultMaxResident) {
        self.store = store
        self.path = path
        self.sync = sync
        self.nats = nil
        self.idle = idle
        self.maxResident = maxResident
    }

    /// The SQLite file for a configuration read from `configurationPath` (nil: no file).
    public func resolvedPath(configurationPath: String?) -> String {
        if let path { return path }
        guard let configurationPath else { return Self.defaultPath }
        return RuntimeConfiguration.resolve(Self.defaultPath, relativeToFolderOf: configurationPath)
    }
}
