import Synchronization

/// One agent type's handler calls and failures, counted by every agent of the type (each
/// holds it from its activation): one relaxed atomic add per call, on the agent's worker thread.
final class HandlerTally: Sendable {
    let calls = Atomic<Int>(0)
    /// A handler that returned an error status or called `fail`, or an RPC handler that did
    /// not answer within the handler timeout.
    let failures = Atomic<Int>(0)

    @inline(__always) func called() { calls.add(1, ordering: .relaxed) }
    func failed() { failures.add(1, ordering: .relaxed) }
}

/// What the runtime received from its host, by kind, counted on the thread that read it.
///
/// Only the connection's stream callbacks write it — the callbacks of one call never overlap,
/// and a reconnection's stream opens after the old one ended — so each count is a relaxed load
/// and store, not an atomic read-modify-write. (Benchmarks that feed messages through
/// `deliverFromHost` from another thread at the same time may lose a count, never more.)
final class IntakeTally: Sendable {
    /// Events, requests, responses.
    private let counts: InlineArray<3, Atomic<Int>> = InlineArray { _ in Atomic(0) }

    @inline(__always)
    func received(_ kind: IncomingMessage.Kind) {
        let slot: Int
        switch kind {
        case .event: slot = 0
        case .request: slot = 1
        case .response: slot = 2
        }
        counts[slot].store(counts[slot].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    var totals: (events: Int, requests: Int, responses: Int) {
        (counts[0].load(ordering: .relaxed), counts[1].load(ordering: .relaxed), counts[2].load(ordering: .relaxed))
    }
}

/// Every agent type's ``HandlerTally``, by name (bounded by the types the plugins declare).
final class HandlerTallies: Sendable {
    private let tallies = Mutex<[String: HandlerTally]>([:])

    /// The tally of agent type `name`, made on first use (its first agent's activation).
    func tally(forType name: String) -> HandlerTally {
        tallies.withLock { tallies in
            if let tally = tallies[name] { return tally }
            let tally = HandlerTally()
            tallies[name] = tally
            return tally
        }
    }

    var totals: [(type: String, calls: Int, failures: Int)] {
        tallies.withLock { tallies in
            tallies.map { ($0.key, $0.value.calls.load(ordering: .relaxed), $0.value.failures.load(ordering: .relaxed)) }
        }
    }
}
