import HeapModule

/// The deadlines of things that wait for an answer — RPCs relayed by the host, RPCs a plugin
/// sent, handler calls left pending — earliest first, so that expiring them costs a look at
/// the head instead of a scan of everything that waits.
///
/// A value type: keep it inside the `Mutex` that guards the table of pending things it times.
/// Cancelling is cheap (a dictionary removal); the heap entry stays behind and is skipped when
/// it comes up, and the heap is rebuilt when such leftovers outnumber the live deadlines.
///
/// ```swift
/// var deadlines = DeadlineQueue<UInt64>()
/// deadlines.schedule(7, at: .now + .seconds(60))
/// deadlines.cancel(7)                       // answered in time
/// for id in deadlines.removeExpired(now: .now) { answerWithTimeout(id) }
/// ```
public struct DeadlineQueue<Key: Hashable & Sendable>: Sendable {
    private struct Entry: Comparable, Sendable {
        var at: ContinuousClock.Instant
        var key: Key
        static func < (a: Entry, b: Entry) -> Bool { a.at < b.at }
        static func == (a: Entry, b: Entry) -> Bool { a.at == b.at && a.key == b.key }
    }

    private var heap = Heap<Entry>()
    /// The live deadline of each key; a heap entry that disagrees is a leftover.
    private var live: [Key: ContinuousClock.Instant] = [:]

    public init() {}

    /// Keys with a live deadline.
    public var count: Int { live.count }
    public var isEmpty: Bool { live.isEmpty }

    /// Sets (or moves) the deadline of `key`.
    public mutating func schedule(_ key: Key, at deadline: ContinuousClock.Instant) {
        live[key] = deadline
        heap.insert(Entry(at: deadline, key: key))
        compactIfNeeded()
    }

    /// Drops the deadline of `key` (it was answered); false if it had none.
    @discardableResult
    public mutating func cancel(_ key: Key) -> Bool {
        live.removeValue(forKey: key) != nil
    }

    /// Removes and returns the keys whose deadline is at or before `now`, earliest first.
    public mutating func removeExpired(now: ContinuousClock.Instant) -> [Key] {
        var expired: [Key] = []
        while let first = heap.min, first.at <= now {
            heap.removeMin()
            guard live[first.key] == first.at else { continue }
            live[first.key] = nil
            expired.append(first.key)
        }
        return expired
    }

    /// Removes and returns every key with a live deadline (shutdown, a lost connection).
    public mutating func removeAll() -> [Key] {
        defer {
            live.removeAll()
            heap = Heap()
        }
        return Array(live.keys)
    }

    /// The earliest live deadline.
    public mutating func earliest() -> ContinuousClock.Instant? {
        while let first = heap.min {
            if live[first.key] == first.at { return first.at }
            heap.removeMin()
        }
        return nil
    }

    /// Rebuilds the heap from the live deadlines once leftovers of cancelled ones dominate it.
    private mutating func compactIfNeeded() {
        guard heap.count > 4 * live.count + 1024 else { return }
        heap = Heap(live.map { Entry(at: $0.value, key: $0.key) })
    }
}
