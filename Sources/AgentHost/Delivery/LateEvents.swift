import DequeModule
import GRPCTransport
import Logging
import Synchronization

/// Events kept for subscribers that arrive late: every event that matched no subscription, and
/// — during the first ``window`` after the host starts, while the workers of its previous life
/// come back — every event. A subscription (or an agent type registration) that arrives within
/// the window receives the kept events it matches, in order, once: each kept event remembers whom
/// it reached.
///
/// Bounded in bytes and in time; what falls out is counted and logged. The publish path takes
/// the lock only while something is kept (or in the start window), or when an event has no
/// recipient; registrations take it around the table change and the hand-out, so that no live
/// event can overtake a kept one on its way to a new subscriber.
final class LateEvents: Sendable {
    struct Entry {
        let message: MessageBuffer
        let topicType: String
        /// The topic source (for shared agent types, the key).
        let topicSource: String
        /// Forwarded by another host: delivered to this host's workers only.
        let forwarded: Bool
        /// Whom it reached.
        var reached: Reached
        /// Kept only because the start window was open (it reached someone).
        let forStartWindow: Bool
        let keptAt: ContinuousClock.Instant
        var bytes: Int { message.count }
    }

    /// Whom an event reached: this host's workers (client ids) and other hosts (names). Arrays:
    /// an event reaches a few, and appending a client id's string only retains it.
    struct Reached: Sendable {
        var clients: [String] = []
        var hosts: [String] = []
        var isEmpty: Bool { clients.isEmpty && hosts.isEmpty }
        var count: Int { clients.count + hosts.count }

        mutating func formUnion(_ other: Reached) {
            clients.append(contentsOf: other.clients)
            hosts.append(contentsOf: other.hosts)
        }
    }

    private struct State: ~Copyable {
        var entries = Deque<Entry>()
        var bytes = 0
        /// Of those, the bytes of events kept only for the start window.
        var startWindowBytes = 0
        /// Counted once per spell of evictions for the log line.
        var evictedInSpell = 0
    }

    let window: Duration
    let byteLimit: Int
    /// What events that reached someone may take during the start window: 1/64 of the bound
    /// (1 MiB by default). Every host starts with that window, and a burst in its first seconds
    /// would otherwise keep up to the whole bound (measured: +13 MiB of the host's peak under
    /// Benchmarks/compare's load).
    var startWindowByteLimit: Int { byteLimit / 64 }
    private let startWindowEnds: ContinuousClock.Instant
    private let state = Mutex(State())
    /// Something is kept, or the start window is open: publishes take the slow path.
    private let active = Atomic<Bool>(true)
    private let logger: Logger

    /// Events kept, handed to a late subscriber, and dropped unclaimed (expired or evicted).
    let kept = Atomic<Int>(0)
    let deliveredLate = Atomic<Int>(0)
    let expired = Atomic<Int>(0)

    init(window: Duration, byteLimit: Int, logger: Logger) {
        self.window = window
        self.byteLimit = byteLimit
        self.startWindowEnds = .now + window
        self.logger = logger
    }

    /// Whether a publish must go through ``publish(_:_:)``.
    @inline(__always)
    var isActive: Bool { active.load(ordering: .relaxed) }

    /// Routes an event under the lock with `route` (returns whom it reached) and keeps it if it
    /// reached nobody, or during the start window.
    func publish(_ entry: (message: MessageBuffer, topicType: String, topicSource: String, forwarded: Bool),
                 route: () -> Reached) {
        let now = ContinuousClock.now
        let evicted = state.withLock { state -> Int in
            let reached = route()
            let forStartWindow = !reached.isEmpty
            if forStartWindow {
                guard now < startWindowEnds, state.startWindowBytes + entry.message.count <= startWindowByteLimit else { return 0 }
                state.startWindowBytes += entry.message.count
            }
            state.entries.append(Entry(
                message: entry.message, topicType: entry.topicType, topicSource: entry.topicSource,
                forwarded: entry.forwarded, reached: reached, forStartWindow: forStartWindow, keptAt: now))
            state.bytes += entry.message.count
            active.store(true, ordering: .relaxed)
            kept.wrappingAdd(1, ordering: .relaxed)
            var evicted = 0
            while state.bytes > byteLimit, let oldest = state.entries.popFirst() {
                state.bytes -= oldest.bytes
                if oldest.forStartWindow { state.startWindowBytes -= oldest.bytes }
                evicted += 1
            }
            return evicted
        }
        if evicted > 0 { noteEvicted(evicted) }
    }

    /// Runs `change` (a table change that may add recipients) and then hands each kept event to
    /// the recipients it has now and had not reached (`route`: whom to skip → whom it reached),
    /// in order, all under the lock.
    func changingRecipients<T, E: Error>(
        _ change: () throws(E) -> T, route: (Entry) -> Reached
    ) throws(E) -> T {
        try state.withLock { (state) throws(E) -> T in
            let result = try change()
            var handed = 0
            for index in state.entries.indices {
                let reached = route(state.entries[index])
                guard !reached.isEmpty else { continue }
                state.entries[index].reached.formUnion(reached)
                handed += reached.count
            }
            if handed > 0 { deliveredLate.wrappingAdd(handed, ordering: .relaxed) }
            return result
        }
    }

    /// Drops what is older than the window; closes the fast path once nothing is kept and the
    /// start window is over.
    func prune(now: ContinuousClock.Instant) {
        let dropped = state.withLock { state -> Int in
            var dropped = 0
            while let oldest = state.entries.first, now - oldest.keptAt >= window {
                state.entries.removeFirst()
                state.bytes -= oldest.bytes
                if oldest.forStartWindow { state.startWindowBytes -= oldest.bytes }
                // An event that reached someone was kept only for the start window.
                if oldest.reached.isEmpty { dropped += 1 }
            }
            if state.entries.isEmpty && now >= startWindowEnds {
                active.store(false, ordering: .relaxed)
                state.evictedInSpell = 0
            }
            return dropped
        }
        if dropped > 0 {
            expired.wrappingAdd(dropped, ordering: .relaxed)
            logger.info("events no subscriber claimed within the late-subscriber window dropped", metadata: [
                "events": "\(dropped)", "window": "\(window)",
            ])
        }
    }

    private func noteEvicted(_ count: Int) {
        expired.wrappingAdd(count, ordering: .relaxed)
        let first = state.withLock { state -> Bool in
            defer { state.evictedInSpell += count }
            return state.evictedInSpell == 0
        }
        if first {
            logger.warning("late-subscriber window full: the oldest kept events dropped", metadata: [
                "limit.bytes": "\(byteLimit)", "events": "\(count)",
            ])
        }
    }

    /// Events and bytes kept now.
    var usage: (events: Int, bytes: Int) { state.withLock { ($0.entries.count, $0.bytes) } }
}
