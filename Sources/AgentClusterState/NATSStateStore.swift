import AgentCluster
import AgentCore
import AgentState
import Dispatch
import Foundation
import Synchronization

/// Agents' state in a NATS JetStream key-value bucket: the ``StateStore`` that the runtimes of a
/// cluster share, so that an agent moving to another host finds its state there, and a former
/// owner that is slow to notice is fenced off by the revision.
///
/// ```swift
/// let connection = try await NATSConnection.connect(try .init(servers: "nats://10.0.0.5:4222"), logger: logger)
/// let store = try await NATSStateStore.open(connection: connection)
/// let current = try store.get(id)                                  // on a thread of the runtime's
/// let revision = try store.put(id, bytes, ifRevision: current?.revision ?? 0)
/// ```
///
/// **Layout.** One key per agent: base64url without padding of the agent type and of the agent
/// key, joined with `.` (an empty part is `=`, which no encoding contains), so that keys of any
/// text fit the bucket's key alphabet `[-/_=.a-zA-Z0-9]` (``key(for:)``). The value is the
/// agent's revision as 8 bytes big-endian, then the state's bytes. The bucket keeps one value a
/// key (history 1), on disk (file storage).
///
/// **Revisions.** The protocol's revision grows by exactly one a write; a key-value revision
/// is the stream's sequence number, shared by every key of the bucket. So the agent's revision
/// travels in the value, and the key-value revision is only what the compare-and-set compares:
/// `create` for revision 0 (which works over a delete marker), `update(ifRevision:)` otherwise.
/// The store remembers, per agent, the pair it last wrote or read, so that a write after a
/// write or a read needs no read of its own; a pair that is out of date only costs a failed
/// compare-and-set and a read, after which a revision other than the one expected is a
/// ``StateStoreError/Code/conflict`` naming the revision found, as ``SQLiteStateStore`` says it.
///
/// **Threads and blocking.** The protocol is synchronous: each call blocks its thread until
/// NATS answered, at most about the connection's ``NATSConnection/jetStreamTimeout`` (see
/// ``deadline``). That is what the runtime's callers want: they are threads of the runtime's own
/// (the checkpoint writer, handler workers), for which waiting on the store is their job, like
/// waiting on SQLite's disk. Precondition: call it from such threads, not from Swift's
/// cooperative pool, where a blocked thread holds up other tasks. Called from the pool by
/// mistake it still does not deadlock: its async steps run on a thread of this type's own
/// (``StoreExecutor``), never on the pool, and the key-value calls on the connection's threads.
/// Those threads (``NATSConnection/Options/blockingCallThreads``, two by default) bound how
/// many calls are under way at once, and are shared with the connection's other users: give
/// the store a connection of its own, or more threads, where it carries much.
///
/// A delete leaves a delete marker in the bucket (what a watch of it needs); markers of agents
/// gone for good can be cleared with ``KeyValueBucket/removeDeleteMarkers(olderThan:)``.
///
/// **Failures.** When NATS cannot be reached a call fails with ``StateStoreError/Code/failed``
/// naming the address, the bucket, the agent and the cause: at once while the connection is
/// down (so that no write waits in nats.c's reconnect buffer, to be applied after it was
/// reported failed), else when the request times out. A write that timed out may still have
/// happened (its revision fences what follows: the next write from the old revision is a
/// conflict that names the new one).
public final class NATSStateStore: StateStore, CustomStringConvertible {
    public let connection: NATSConnection
    public let bucket: KeyValueBucket
    /// "bucket NAME on ADDRESS": the store in errors.
    public let name: String
    /// The longest a call blocks its thread: the connection's JetStream timeout and one second
    /// more, for the calls queued on the connection's threads before it. Past it the call fails
    /// (``StateStoreError/Code/failed``; what it began may still finish), and a batch starts no
    /// further write.
    public let deadline: Duration
    /// Per agent, the revisions last written or read (a hint: the server checks every write).
    private let known = Mutex<[AgentID: Revisions]>([:])

    public var description: String { name }

    /// Agents whose revisions the store remembers at most (beyond, another is forgotten to make
    /// room).
    static let knownLimit = 100_000
    /// Writes of a batch in flight at once. Each key-value call holds one of the connection's
    /// blocking-call threads (``NATSConnection/Options/blockingCallThreads``) for a round trip,
    /// so those bound the parallelism; this keeps a few more queued so that a thread never
    /// waits for the next write, and few enough that a batch against a server that stopped
    /// answering leaves little queued behind its ``deadline``.
    static let batchWidth = 4
    /// Compare-and-set attempts of one write or delete whose expected revision keeps being
    /// found at another key-value revision (deleted and written again in between).
    static let attempts = 8

    /// The revisions of an agent's stored state: its own, and the key-value revision that holds it.
    private struct Revisions {
        var logical: UInt64
        var kv: UInt64
    }

    private init(connection: NATSConnection, bucket: KeyValueBucket) {
        self.connection = connection
        self.bucket = bucket
        name = "bucket \(bucket.name) on \(connection.address)"
        deadline = connection.jetStreamTimeout + .seconds(1)
    }

    /// Creates the bucket (history 1, file storage, `replicas` copies) or binds to it if it
    /// exists with those settings.
    /// - Throws: ``StateStoreError`` with ``StateStoreError/Code/cannotOpen`` naming the NATS
    ///   address and the bucket: no JetStream there, the bucket exists with other settings, an
    ///   invalid bucket name, the connection closed.
    public static func open(
        connection: NATSConnection, bucket: String = "agentd-state", replicas: Int = 1
    ) async throws(StateStoreError) -> NATSStateStore {
        var configuration = KeyValueBucket.Configuration(name: bucket, history: 1, storage: .file)
        configuration.replicas = replicas
        do {
            let opened = try await connection.createOrBindBucket(configuration)
            return NATSStateStore(connection: connection, bucket: opened)
        } catch {
            throw StateStoreError(
                .cannotOpen, store: "bucket \(bucket) on \(connection.address)", "opening it failed: \(error)")
        }
    }

    // MARK: - StateStore

    public func get(_ agent: AgentID) throws(StateStoreError) -> StoredState? {
        try blocking("reading the state of \(agent)", forgetting: agent) { [self] () async throws(StateStoreError) in
            try await read(agent)?.state
        }
    }

    public func put(_ agent: AgentID, _ bytes: [UInt8], ifRevision expected: UInt64) throws(StateStoreError) -> UInt64 {
        try blocking("writing the state of \(agent)", forgetting: agent) { [self] () async throws(StateStoreError) in
            try await write(agent, bytes, ifRevision: expected)
        }
    }

    /// The writes go to NATS concurrently (they are independent keys; several writes of one
    /// agent go one after the other, in order). Not one commit: each write is its own
    /// compare-and-set, and each failure — a conflict, or NATS not answering — fails that write
    /// only, in its result. Never throws.
    public func put(_ writes: [StateWrite]) throws(StateStoreError) -> [Result<UInt64, StateStoreError>] {
        guard !writes.isEmpty else { return [] }
        let progress = BatchProgress(writes)
        let finished = Rendezvous<Void>()
        StoreExecutor.start { [self] in
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<min(Self.batchWidth, progress.chains.count) {
                    group.addTask { [self] in
                        while let chain = progress.nextChain() {
                            for index in chain {
                                guard !progress.hasEnded else { return }
                                let write = writes[index]
                                let result = await outcome { () async throws(StateStoreError) in
                                    try await self.write(write.agent, write.bytes, ifRevision: write.expectedRevision)
                                }
                                progress.record(result, at: index)
                            }
                        }
                    }
                }
            }
            finished.finish(())
        }
        _ = finished.wait(for: deadline)
        return progress.end().enumerated().map { index, result in
            if let result { return result }
            forget(writes[index].agent)
            return .failure(noAnswer("writing the state of \(writes[index].agent)"))
        }
    }

    public func delete(_ agent: AgentID, ifRevision expected: UInt64?) throws(StateStoreError) -> Bool {
        try blocking("deleting the state of \(agent)", forgetting: agent) { [self] () async throws(StateStoreError) in
            try await remove(agent, ifRevision: expected)
        }
    }

    /// The bucket's key of `agent`'s state: base64url without padding of its type and of its key,
    /// joined with `.`; an empty type or key is `=`.
    public static func key(for agent: AgentID) -> String {
        "\(base64URL(agent.type)).\(base64URL(agent.key))"
    }

    // MARK: - The operations (async: tasks preferring StoreExecutor)

    private func read(_ agent: AgentID) async throws(StateStoreError) -> (state: StoredState, kv: UInt64)? {
        let key = Self.key(for: agent)
        try checkConnected("reading the state of \(agent)")
        let entry: KeyValueEntry?
        do {
            entry = try await bucket.get(key)
        } catch {
            throw failure("reading the state of \(agent)", error)
        }
        guard let entry, entry.operation == .put else {
            forget(agent)
            return nil
        }
        guard entry.value.count >= 8 else {
            throw StateStoreError(
                .corrupt, store: name,
                "the stored state of \(agent) (key \(key), revision \(entry.revision)) is \(entry.value.count) bytes, "
                    + "fewer than its 8-byte revision header: the bucket holds values not written by agentd's NATSStateStore")
        }
        let logical = entry.value.prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        remember(agent, Revisions(logical: logical, kv: entry.revision))
        return (StoredState(bytes: Array(entry.value.dropFirst(8)), revision: logical), entry.revision)
    }

    private func write(_ agent: AgentID, _ bytes: [UInt8], ifRevision expected: UInt64) async throws(StateStoreError) -> UInt64 {
        let key = Self.key(for: agent)
        let revision = expected + 1
        guard bytes.count <= Int(Int32.max) - 8 else {
            // (The key-value calls take an Int32 length; the server's limit is far lower anyway.)
            throw StateStoreError(.failed, store: name, "writing the state of \(agent) failed: \(bytes.count) bytes is too large")
        }
        var value = [UInt8]()
        value.reserveCapacity(8 + bytes.count)
        for shift in stride(from: 56, through: 0, by: -8) { value.append(UInt8(truncatingIfNeeded: revision >> UInt64(shift))) }
        value += bytes
        // The key-value revision to compare with: remembered, or read (none for a first write).
        var holding: UInt64? = recalled(agent).flatMap { $0.logical == expected ? $0.kv : nil }
        for _ in 0..<Self.attempts {
            if expected != 0 && holding == nil {
                let found = try await read(agent)
                guard let found, found.state.revision == expected else {
                    throw conflict(agent, found: found?.state.revision ?? 0, expected: expected)
                }
                holding = found.kv
            }
            try checkConnected("writing the state of \(agent)")
            do {
                let written = if let holding {
                    try await bucket.update(key, value: value, ifRevision: holding)
                } else {
                    try await bucket.create(key, value: value)
                }
                remember(agent, Revisions(logical: revision, kv: written))
                return revision
            } catch let error as NATSError where error.code == .wrongRevision || error.code == .keyExists {
                // Another writer came first — or the revision remembered is out of date: read.
                let found = try await read(agent)
                let foundRevision = found?.state.revision ?? 0
                guard foundRevision == expected else { throw conflict(agent, found: foundRevision, expected: expected) }
                // The expected revision, at another key-value revision (deleted and written again
                // since): compare with that one.
                holding = found?.kv
            } catch {
                forget(agent)  // a write that timed out may have happened
                throw failure("writing the state of \(agent)", error)
            }
        }
        throw StateStoreError(
            .failed, store: name,
            "writing the state of \(agent) failed: its stored state kept changing at revision \(expected) "
                + "(\(Self.attempts) attempts)")
    }

    private func remove(_ agent: AgentID, ifRevision expected: UInt64?) async throws(StateStoreError) -> Bool {
        let key = Self.key(for: agent)
        var holding: UInt64? = recalled(agent).flatMap { expected == nil || $0.logical == expected ? $0.kv : nil }
        for _ in 0..<Self.attempts {
            let revision: UInt64
            if let holding {
                revision = holding
            } else {
                guard let found = try await read(agent) else { return false }
                if let expected, found.state.revision != expected { return false }
                revision = found.kv
            }
            try checkConnected("deleting the state of \(agent)")
            do {
                try await bucket.delete(key, ifRevision: revision)
                forget(agent)
                return true
            } catch let error as NATSError where error.code == .wrongRevision {
                holding = nil  // changed since: read again
            } catch {
                forget(agent)
                throw failure("deleting the state of \(agent)", error)
            }
        }
        throw StateStoreError(
            .failed, store: name,
            "deleting the state of \(agent) failed: its stored state kept changing (\(Self.attempts) attempts)")
    }

    // MARK: - Errors

    private func conflict(_ agent: AgentID, found: UInt64, expected: UInt64) -> StateStoreError {
        StateStoreError(
            .conflict, store: name,
            "the state of \(agent) is at revision \(found), not \(expected): another writer came first", foundRevision: found)
    }

    private func failure(_ doing: String, _ error: any Error) -> StateStoreError {
        StateStoreError(.failed, store: name, "\(doing) failed: \(error)")
    }

    private func noAnswer(_ doing: String) -> StateStoreError {
        StateStoreError(
            .failed, store: name,
            "\(doing) failed: no answer from NATS at \(connection.address) within \(deadline) (whether it happened is unknown)")
    }

    /// Fails at once unless the connection is up: a request made while nats.c reconnects would
    /// wait in its reconnect buffer, time out, and be sent — and applied — once reconnected.
    private func checkConnected(_ doing: String) throws(StateStoreError) {
        let status = connection.status
        guard status == .connected else {
            throw StateStoreError(.failed, store: name, "\(doing) failed: NATS at \(connection.address) is not connected (\(status))")
        }
    }

    // MARK: - Revisions remembered

    private func recalled(_ agent: AgentID) -> Revisions? {
        known.withLock { $0[agent] }
    }

    private func remember(_ agent: AgentID, _ revisions: Revisions) {
        known.withLock { known in
            if known.count >= Self.knownLimit && known[agent] == nil { known.remove(at: known.startIndex) }
            known[agent] = revisions
        }
    }

    private func forget(_ agent: AgentID) {
        _ = known.withLock { $0.removeValue(forKey: agent) }
    }

    // MARK: - Blocking on the async calls

    /// Runs `operation` in a task of its own and blocks this thread until it ends, or until
    /// ``deadline`` (then fails, and forgets `agent`'s revisions: the operation may still finish).
    ///
    /// Blocking is what the callers want (see ``NATSStateStore``): the thread has nothing else to
    /// do until the state is read or written. The task starts on this thread and goes on, after
    /// each key-value call, on ``StoreExecutor``'s thread, never on Swift's cooperative pool.
    private func blocking<Value: Sendable>(
        _ doing: @autoclosure () -> String, forgetting agent: AgentID,
        _ operation: @escaping @Sendable () async throws(StateStoreError) -> Value
    ) throws(StateStoreError) -> Value {
        let rendezvous = Rendezvous<Result<Value, StateStoreError>>()
        StoreExecutor.start {
            rendezvous.finish(await outcome(operation))
        }
        guard let result = rendezvous.wait(for: deadline) else {
            forget(agent)
            throw noAnswer(doing())
        }
        return try result.get()
    }
}

/// `text`'s UTF-8 in base64url without padding (RFC 4648 §5); `=` for the empty text, which
/// no encoding is.
func base64URL(_ text: String) -> String {
    let bytes = Array(text.utf8)
    guard !bytes.isEmpty else { return "=" }
    let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    var encoded: [UInt8] = []
    encoded.reserveCapacity((bytes.count * 4 + 2) / 3)
    var index = 0
    while index < bytes.count {
        let count = min(3, bytes.count - index)
        var group = UInt32(bytes[index]) << 16
        if count > 1 { group |= UInt32(bytes[index + 1]) << 8 }
        if count > 2 { group |= UInt32(bytes[index + 2]) }
        for position in 0...count { encoded.append(alphabet[Int(group >> UInt32(18 - 6 * position) & 0x3f)]) }
        index += 3
    }
    return String(decoding: encoded, as: UTF8.self)
}

/// What `body` returns or throws.
private func outcome<Value>(
    _ body: () async throws(StateStoreError) -> Value
) async -> Result<Value, StateStoreError> {
    do {
        return .success(try await body())
    } catch {
        return .failure(error)
    }
}

/// A value one thread hands to another that waits for it, with a deadline.
private final class Rendezvous<Value: Sendable>: Sendable {
    private let value = Mutex<Value?>(nil)
    private let done = DispatchSemaphore(value: 0)

    func finish(_ value: Value) {
        self.value.withLock { $0 = value }
        done.signal()
    }

    /// The value, or nil if `timeout` passes first.
    func wait(for timeout: Duration) -> Value? {
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = Int(clamping: seconds.multipliedReportingOverflow(by: 1_000_000_000).partialValue
            + attoseconds / 1_000_000_000)
        guard done.wait(timeout: .now() + .nanoseconds(nanoseconds)) == .success else { return nil }
        return value.withLock { $0 }
    }
}

/// The writes of a batch: which agent's writes to start next, and the results so far. Once
/// ended (its caller's deadline), no further write starts.
private final class BatchProgress: Sendable {
    /// The indices of the writes, grouped by agent (each group in order), groups in the order of
    /// their first write.
    let chains: [[Int]]
    private let state: Mutex<State>

    private struct State {
        var results: [Result<UInt64, StateStoreError>?]
        var nextChain = 0
        var ended = false
    }

    init(_ writes: [StateWrite]) {
        var chainOf: [AgentID: Int] = [:]
        var chains: [[Int]] = []
        for (index, write) in writes.enumerated() {
            if let chain = chainOf[write.agent] {
                chains[chain].append(index)
            } else {
                chainOf[write.agent] = chains.count
                chains.append([index])
            }
        }
        self.chains = chains
        state = Mutex(State(results: Array(repeating: nil, count: writes.count)))
    }

    /// The writes of an agent no worker has taken yet, to make one after another; nil when none
    /// is left or the batch ended.
    func nextChain() -> [Int]? {
        state.withLock { state in
            guard !state.ended, state.nextChain < chains.count else { return nil }
            defer { state.nextChain += 1 }
            return chains[state.nextChain]
        }
    }

    var hasEnded: Bool { state.withLock { $0.ended } }

    func record(_ result: Result<UInt64, StateStoreError>, at index: Int) {
        state.withLock { $0.results[index] = result }
    }

    /// Ends the batch: no write starts from now on. The results so far (nil: not finished).
    func end() -> [Result<UInt64, StateStoreError>?] {
        state.withLock { state in
            state.ended = true
            return state.results
        }
    }
}

/// The thread that runs the store's async steps between key-value calls: the glue between a
/// blocked caller and the connection's blocking-call threads (take a call's answer, decide and
/// queue the next, hand the result over). A thread of its own rather than Swift's cooperative
/// pool, so that callers blocked on the pool (by mistake: see ``NATSStateStore``) cannot starve
/// the steps they wait for. One for the process, made on first use and kept: its steps take
/// microseconds (the waiting is done by the connection's threads).
final class StoreExecutor: TaskExecutor {
    static let shared = StoreExecutor()

    /// Guards `jobs`, and wakes the thread. A pthread mutex and condition underneath, which
    /// ThreadSanitizer sees (it does not see `Synchronization.Mutex` hand over when contended:
    /// that lock is taken in the kernel, by a futex, and TSan reports the accesses it orders).
    private let condition = NSCondition()
    /// The jobs to run, in order. Read and written only with `condition` locked.
    nonisolated(unsafe) private var jobs: [UnownedJob] = []

    private init() {
        let thread = Thread { [self] in run() }
        thread.name = "agentd-nats-state"
        thread.start()
    }

    /// Starts `operation` in a task that prefers this executor: on the calling thread up to its
    /// first suspension (`Task.immediate`, Swift 6.2: no hand-off before the first key-value call
    /// is queued), or where the platform predates it, on this executor from the start.
    static func start(_ operation: @escaping @Sendable () async -> Void) {
        if #available(macOS 26, *) {
            Task.immediate(executorPreference: shared, operation: operation)
        } else {
            Task.detached(executorPreference: shared, operation: operation)
        }
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() {
        let executor = asUnownedTaskExecutor()
        var ready: [UnownedJob] = []
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            swap(&ready, &jobs)
            condition.unlock()
            for job in ready { job.runSynchronously(on: executor) }
            ready.removeAll(keepingCapacity: true)
        }
    }
}
