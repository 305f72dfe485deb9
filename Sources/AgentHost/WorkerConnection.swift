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
    /// The stream speaks acknowledged delivery (``AgentCore/Delivery``): our runtime.
    let delivery: AcknowledgedStream?

    init(clientID: String, call: ServerCall, delivery: AcknowledgedStream? = nil) {
        self.clientID = clientID
        self.call = call
        self.peer = call.peer
        self.delivery = delivery
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
        let result = if let delivery {
            delivery.send(message) { call.send(message, maxMessages: limits.messages, maxBytes: limits.bytes) }
        } else {
            call.send(message, maxMessages: limits.messages, maxBytes: limits.bytes)
        }
        guard result == .full else { return true }
        let count = dropped.wrappingAdd(1, ordering: .relaxed).newValue
        if count == 1 || count % 1000 == 0 {
            logger.warning("slow subscriber: events dropped because its queue is full", metadata: [
                "client.id": "\(clientID)", "peer": "\(peer)", "dropped": "\(count)",
                "queue.limit.messages": "\(limits.messages)", "queue.limit.bytes": "\(limits.bytes)",
            ])
        }
        return false
    }

    /// Sends an event of the host's own (a notice) or one sent again: not bounded by the queue
    /// limits, counted on an acknowledged stream like any event.
    @discardableResult
    func sendEvent(_ message: MessageBuffer) -> Bool {
        guard let delivery else { return call.send(message) }
        return delivery.send(message) { call.send(message) ? .queued : .closed } == .queued
    }

    /// Events dropped for this connection so far.
    var droppedEvents: Int { dropped.load(ordering: .relaxed) }

    /// Messages waiting to be sent to this connection.
    var queuedMessages: Int { call.queuedSendCount }

    var description: String { "client \(clientID) (\(peer))" }
}
