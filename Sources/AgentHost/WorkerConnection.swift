import GRPCTransport
import Logging
import Synchronization

/// One worker's open data channel (`OpenChannel`): where the host sends it events, requests
/// and responses.
final class WorkerConnection: Sendable, CustomStringConvertible {
    /// The worker's `client-id` metadata.
    let clientID: String
    /// The peer address, for log lines.
    let peer: String
    let call: ServerCall

    init(clientID: String, call: ServerCall) {
        self.clientID = clientID
        self.call = call
        self.peer = call.peer
    }

    /// Events dropped because this connection read too slowly.
    private let dropped = Atomic<Int>(0)

    /// Sends a message (the same bytes may go to many connections without a copy).
    @inline(__always)
    func send(_ message: MessageBuffer) -> Bool { call.send(message) }

    /// Sends an event unless this connection's queue is at its bound; a dropped event is
    /// counted and logged (the first, then every 1,000th), naming the slow client.
    /// - Returns: false if it was dropped.
    @inline(__always) @discardableResult
    func sendEvent(_ message: MessageBuffer, limits: AgentHost.QueueLimits, logger: Logger) -> Bool {
        guard call.send(message, maxMessages: limits.messages, maxBytes: limits.bytes) == .full else { return true }
        let count = dropped.wrappingAdd(1, ordering: .relaxed).newValue
        if count == 1 || count % 1000 == 0 {
            logger.warning("slow subscriber: events dropped because its queue is full", metadata: [
                "client.id": "\(clientID)", "peer": "\(peer)", "dropped": "\(count)",
                "queue.limit.messages": "\(limits.messages)", "queue.limit.bytes": "\(limits.bytes)",
            ])
        }
        return false
    }

    /// Events dropped for this connection so far.
    var droppedEvents: Int { dropped.load(ordering: .relaxed) }

    /// Messages waiting to be sent to this connection.
    var queuedMessages: Int { call.queuedSendCount }

    var description: String { "client \(clientID) (\(peer))" }
}
