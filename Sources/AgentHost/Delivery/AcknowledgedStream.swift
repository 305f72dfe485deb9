import AgentCore
import DequeModule
import GRPCTransport
import Synchronization

/// One worker's data channel speaking acknowledged delivery (``Delivery``): what it published
/// (counted, for the host's acknowledgements) and what the host sent it that it has not
/// confirmed (kept, to send again should the stream break before it confirms).
final class AcknowledgedStream: Sendable {
    /// Events received from the worker on this stream: its publishes, in the order written.
    /// Counted by the stream's reader after each event is routed.
    let received = Atomic<UInt64>(0)
    /// The `received` count the ledger has taken into a checkpoint (the ledger's only).
    let checkpointed = Atomic<UInt64>(0)
    /// Events sent to the worker on this stream, and how many it confirmed.
    let sent = Atomic<UInt64>(0)
    let confirmed = Atomic<UInt64>(0)

    private struct Outstanding: ~Copyable {
        /// Sent, not confirmed, oldest first.
        var messages = Deque<MessageBuffer>()
        /// Their bytes.
        var bytes = 0
        /// The stream ended (what was outstanding went elsewhere) or its worker stopped
        /// confirming: nothing more is kept.
        var tracking = true
    }
    private let outstanding = Mutex(Outstanding())
    /// False once the stream ended or the worker was given up on: the ledger no longer waits
    /// for its confirmations.
    private let awaited = Atomic<Bool>(true)

    /// The most a worker may leave unconfirmed (messages, bytes) before the host stops
    /// waiting for it: one connection's queue bounds.
    let limit: (messages: Int, bytes: Int)

    init(limit: (messages: Int, bytes: Int)) {
        self.limit = limit
    }

    /// Sends an event with `write` and, when it went out, keeps it until the worker confirms it.
    @inline(__always)
    func send(_ message: MessageBuffer, _ write: () -> Call.BoundedSendResult) -> Call.BoundedSendResult {
        outstanding.withLock { outstanding in
            let result = write()
            guard result == .queued, outstanding.tracking else { return result }
            outstanding.messages.append(message)
            outstanding.bytes += message.count
            sent.wrappingAdd(1, ordering: .releasing)
            if outstanding.messages.count > limit.messages || outstanding.bytes > limit.bytes {
                // A worker that does not confirm must not make the host hold its events.
                outstanding.tracking = false
                outstanding.messages.removeAll()
                outstanding.bytes = 0
                awaited.store(false, ordering: .releasing)
            }
            return result
        }
    }

    /// The worker received the first `count` events of the stream. A count beyond what was
    /// sent (a confused or lying worker) confirms nothing.
    func confirm(_ count: UInt64) {
        let released = outstanding.withLock { outstanding -> [MessageBuffer] in
            let previous = confirmed.load(ordering: .relaxed)
            guard count > previous, count <= sent.load(ordering: .relaxed), outstanding.tracking else { return [] }
            let newly = min(Int(count - previous), outstanding.messages.count)
            // Freed after the lock (the routing threads send under it): often the last references.
            let released = Array(outstanding.messages.prefix(newly))
            for message in released { outstanding.bytes -= message.count }
            outstanding.messages.removeFirst(newly)
            confirmed.store(count, ordering: .releasing)
            return released
        }
        withExtendedLifetime(released) {}
    }

    /// Whether the worker has confirmed the first `count` events sent to it, or is no longer
    /// waited for.
    func hasConfirmed(_ count: UInt64) -> Bool {
        !awaited.load(ordering: .acquiring) || confirmed.load(ordering: .acquiring) >= count
    }

    /// Whether the ledger waits for this worker's confirmations.
    var isAwaited: Bool { awaited.load(ordering: .acquiring) }

    /// Stops keeping and waiting: the stream ended, or its worker does not confirm in time.
    /// - Returns: what was sent and not confirmed, oldest first.
    func end() -> [MessageBuffer] {
        outstanding.withLock { outstanding in
            defer {
                outstanding.tracking = false
                outstanding.messages.removeAll()
                outstanding.bytes = 0
                awaited.store(false, ordering: .releasing)
            }
            return Array(outstanding.messages)
        }
    }

    /// Events sent and not confirmed.
    var unconfirmedCount: Int { outstanding.withLock { $0.messages.count } }
}
