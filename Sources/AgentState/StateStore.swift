import AgentCore

/// An agent's stored state: the bytes its plugin's `snapshot` wrote, and the revision that
/// wrote them.
public struct StoredState: Sendable, Hashable {
    public var bytes: [UInt8]
    /// Grows by one with every write of this agent's state; never 0 for a stored state.
    public var revision: UInt64

    public init(bytes: [UInt8], revision: UInt64) {
        self.bytes = bytes
        self.revision = revision
    }
}

/// Where agents' state lives between activations and across restarts, by agent id (agent type,
/// key). Narrow on purpose, so that an embedded store (``SQLiteStateStore``) and a distributed
/// one (a cluster's key-value store) fit behind it: read, write if the revision is the one the
/// writer read (fencing: a slow former owner cannot overwrite a newer state), delete.
///
/// ```swift
/// let store = try SQLiteStateStore(path: "state/agents.db")
/// let current = try store.get(id)                                  // nil: never stored
/// let revision = try store.put(id, bytes, ifRevision: current?.revision ?? 0)
/// ```
public protocol StateStore: Sendable {
    /// The stored state of `agent`, or nil if none is stored.
    func get(_ agent: AgentID) throws(StateStoreError) -> StoredState?

    /// Stores `bytes` as `agent`'s state if its stored revision is `expected` (0: nothing is
    /// stored yet).
    /// - Returns: the new revision (`expected + 1`).
    /// - Throws: ``StateStoreError`` with code ``StateStoreError/Code/conflict`` (naming the
    ///   revision found) when another write came first; others when the store cannot write.
    func put(_ agent: AgentID, _ bytes: [UInt8], ifRevision expected: UInt64) throws(StateStoreError) -> UInt64

    /// Several writes in one commit (group commit: one durable flush for all of them). Each
    /// is checked like ``put(_:_:ifRevision:)``; a conflict fails that write only.
    /// - Returns: per write, its new revision or its error, in order.
    /// - Throws: when the commit itself fails (then none of the writes happened).
    func put(_ writes: [StateWrite]) throws(StateStoreError) -> [Result<UInt64, StateStoreError>]

    /// Deletes `agent`'s state if its stored revision is `expected` (nil: whatever it is).
    /// - Returns: whether a state was deleted.
    func delete(_ agent: AgentID, ifRevision expected: UInt64?) throws(StateStoreError) -> Bool
}

/// One write of a batch (see ``StateStore/put(_:)``).
public struct StateWrite: Sendable, Hashable {
    public var agent: AgentID
    public var bytes: [UInt8]
    /// The revision the writer read (0: none stored).
    public var expectedRevision: UInt64

    public init(agent: AgentID, bytes: [UInt8], expectedRevision: UInt64) {
        self.agent = agent
        self.bytes = bytes
        self.expectedRevision = expectedRevision
    }
}

/// Why the state store refused or failed, in words an operator can act on: the store's file or
/// address, the agent, and the cause.
public struct StateStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let value: String
        private init(_ value: String) { self.value = value }
        /// The stored revision is not the expected one (another writer came first).
        public static let conflict = Code("revision conflict")
        /// The store cannot be opened: missing folder, no permission, not a database.
        public static let cannotOpen = Code("cannot open")
        /// The store is locked by another process for longer than the busy timeout.
        public static let busy = Code("busy")
        /// No space left on the device.
        public static let full = Code("full")
        /// The store's file is damaged.
        public static let corrupt = Code("corrupt")
        /// Any other failure of the store (its message says which).
        public static let failed = Code("failed")
        public var description: String { value }
    }

    public var code: Code
    /// The store: a file path or an address.
    public var store: String
    public var message: String
    /// With ``Code/conflict``: the revision found (0: nothing stored).
    public var foundRevision: UInt64?

    public init(_ code: Code, store: String, _ message: String, foundRevision: UInt64? = nil) {
        self.code = code
        self.store = store
        self.message = message
        self.foundRevision = foundRevision
    }

    public var description: String { "state store \(store): \(message)" }
}
