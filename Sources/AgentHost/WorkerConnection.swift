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
    /// Of those, the ones dropped because the host's outbound budget was spent.
    private let droppedOverBudget = Atomic<Int>(0)
    /// Answers (responses to its requests) dropped because it read too slowly.
    private let droppedAnswers = Atomic<Int>(0)

    /// Sends a message (the same bytes may go to many connections without a copy).
    @inline(__always)
    func send(_ message: MessageBuffer) -> Bool { call.send(message) }

    /// Sends a message unless this connection's queue is at its bound, or the host's outbound
    /// budget is spent and this connection holds its share of it (both: `.full`).
    @inline(__always)
    func send(_ message: MessageBuffer, limits: AgentHost.QueueLimits) -> Call.BoundedSendResult {
        guard withinBudget(message) else { return .full }
        return call.send(message, maxMessages: limits.messages, maxBytes: limits.bytes)
    }

    /// Whether the host's outbound budget lets this connection queue `message` (a refusal is
    /// counted by the budget).
    @inline(__always)
    private func withinBudget(_ message: MessageBuffer) -> Bool {
        guard let budget = call.sendBudget else { return true }
        return budget.admits(message.count, held: call.budgetedSendBytes)
    }

    /// Sends an event unless this connection's queue is at its bound or it holds its share of
    /// a spent outbound budget; a dropped event is counted and logged (the first, then every
    /// 1,000th), naming the slow client.
    /// - Returns: false if it was dropped.
    @inline(__always) @discardableResult
    func sendEvent(_ message: MessageBuffer, limits: AgentHost.QueueLimits, logger: Logger) -> Bool {
        var overBudget = false
        func write() -> Call.BoundedSendResult {
            guard withinBudget(message) else {
                overBudget = true
                return .full
            }
            return call.send(message, maxMessages: limits.messages, maxBytes: limits.bytes)
        }
        let result = if let delivery { delivery.send(message, write) } else { write() }
        guard result == .full else { return true }
        if overBudget {
            dropped.add(1, ordering: .relaxed)
            let count = droppedOverBudget.wrappingAdd(1, ordering: .relaxed).newValue
            if count == 1 || count % 1000 == 0 {
                logger.warning("slow subscriber: events dropped because the host's outbound budget is spent and it holds its share", metadata: [
                    "client.id": "\(clientID)", "peer": "\(peer)", "dropped": "\(count)",
                    "outbound.bytes": "\(call.sendBudget?.bytes ?? 0)", "outbound.budget.bytes": "\(call.sendBudget?.limit ?? 0)",
                    "queued.bytes": "\(call.budgetedSendBytes)",
                ])
            }
            return false
        }
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

    /// Sends an answer to one of this connection's own requests, bounded as an event is (a
    /// caller that does not read cannot make the host keep its answers without end); a
    /// dropped answer is counted and logged (the first, then every 1,000th).
    func sendAnswer(_ message: MessageBuffer, limits: AgentHost.QueueLimits, logger: Logger) {
        guard send(message, limits: limits) == .full else { return }
        let count = droppedAnswers.wrappingAdd(1, ordering: .relaxed).newValue
        if count == 1 || count % 1000 == 0 {
            logger.warning("slow caller: answers to its requests dropped because it does not read them", metadata: [
                "client.id": "\(clientID)", "peer": "\(peer)", "dropped": "\(count)",
                "queued.bytes": "\(call.budgetedSendBytes)",
            ])
        }
    }

    /// Events dropped for this connection so far.
    var droppedEvents: Int { dropped.load(ordering: .relaxed) }

    /// Messages waiting to be sent to this connection.
    var queuedMessages: Int { call.queuedSendCount }

    var description: String { "client \(clientID) (\(peer))" }
}
