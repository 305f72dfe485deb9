import AgentCore
import ProtoWire
import GRPCTransport
import Logging
import Synchronization

/// One worker's `OpenChannel` stream (attached to the routing table by ``HostRouter``): the
/// per-message path.
///
/// Runs on the stream's poller thread. Each message is read only as far as routing needs
/// (``Envelope``); an event goes out to its recipients as the very bytes that came in; a
/// request or response is re-framed only to swap its request id.
final class DataChannel: ServerCallHandler {
    let host: AgentHost
    let connection: WorkerConnection
    let logger: Logger
    /// What this channel's messages came to (nil: the host keeps no metrics).
    private let tally: ChannelTally?
    /// Messages refused for a field over its length limit (``refuse(_:_:)``).
    let limitRefusals = Atomic<Int>(0)

    init(host: AgentHost, connection: WorkerConnection) {
        self.host = host
        self.connection = connection
        tally = host.metrics?.openTally()
        var logger = host.logger
        logger[metadataKey: "client.id"] = "\(connection.clientID)"
        self.logger = logger
        if let delivery = connection.delivery {
            // What this runtime's previous stream had not confirmed goes first, before
            // anything its subscriptions bring. (Its previous stream has ended: a client id
            // serves one data channel at a time, so what it left is parked in the ledger.)
            let carried = host.ledger.attach(delivery, connection: connection, replacing: nil)
            for message in carried { connection.sendEvent(message) }
            if !carried.isEmpty {
                host.ledger.eventsResent.wrappingAdd(carried.count, ordering: .relaxed)
                logger.info("events the runtime had not confirmed sent again", metadata: ["events": "\(carried.count)"])
            }
        }
        logger.info("worker connected", metadata: ["peer": "\(connection.peer)"])
    }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        message.withUnsafeBytes { bytes in
            if let delivery = connection.delivery {
                if let count = Delivery.acknowledgedCount(bytes) { return delivery.confirm(count) }
                if Delivery.isEvent(bytes) {
                    // Counted once routed (or refused): the ledger acknowledges what it counted.
                    defer { delivery.received.wrappingAdd(1, ordering: .releasing) }
                    return receive(message, bytes)
                }
            }
            receive(message, bytes)
        }
    }

    private func receive(_ message: MessageBuffer, _ bytes: UnsafeRawBufferPointer) {
        let envelope: Envelope
        do {
            envelope = try Envelope.parse(bytes)
        } catch {
            tally?.unparsable()
            logger.warning("malformed message dropped", metadata: [
                "error": "\(error)", "message.bytes": "\(bytes.count)",
            ])
            return
        }
        tally?.received(.init(envelope))
        if bytes.count > host.configuration.maxMessageBytes {
            tally?.dropped(.init(envelope), .oversized)
            refuseOversized(envelope, size: bytes.count)
            return
        }
        if let violation = FieldLimits.violation(in: envelope) {
            tally?.dropped(.init(envelope), .overLimit)
            refuse(envelope, violation)
            return
        }
        switch envelope {
        case .event(let event):
            guard event.topicType != Placement.noticeTopicType else {
                // Only the host says where a shared type's keys are.
                tally?.dropped(.event, .reservedTopic)
                logger.warning("publish to the host's own placement topic dropped", metadata: ["topic.type": "\(event.topicType)"])
                return
            }
            host.publish(message, event, forwarded: false, logger: logger, tally: tally)
        case .request(let request):
            host.route(bytes, request, from: .worker(connection), deadline: .now + host.configuration.rpcTimeout, logger: logger, tally: tally)
        case .response(let response):
            host.deliver(bytes, response, from: .client(connection.clientID), logger: logger, tally: tally)
        }
    }

    private func refuseOversized(_ envelope: Envelope, size: Int) {
        let limit = host.configuration.maxMessageBytes
        logger.warning("message over the size limit refused", metadata: [
            "peer": "\(connection.peer)", "message.bytes": "\(size)", "limit.bytes": "\(limit)",
        ])
        switch envelope {
        case .request(let request):
            answer(request.requestID, "The request is \(size) bytes, over the host's limit of \(limit) bytes; it was not delivered.")
        case .response(let response):
            if let hostID = UInt64(response.requestID),
               case .deliver(let request) = host.table.routeResponse(hostRequestID: hostID, responder: .client(connection.clientID)) {
                host.answer(request, error: "The answer from \(request.target) is \(size) bytes, over the host's limit of \(limit) bytes.")
            }
        case .event:
            break
        }
    }

    private func answer(_ requestID: String, _ error: String) {
        connection.sendAnswer(
            MessageBuffer(Envelope.errorResponse(requestID: requestID, error: error)), limits: host.configuration.queueLimits, logger: logger)
    }

    func callDidHalfClose(_ call: ServerCall) {
        call.finish(.ok)
    }

    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        if let tally { host.metrics?.closeTally(tally) }
        if let delivery = connection.delivery { host.ledger.detach(delivery, clientID: connection.clientID) }
        host.identities.end(connection.clientID)
        guard let departure = host.table.detachData(connection) else { return }
        host.settle(departure, of: connection.clientID)
        // A cancelled stream is a lost connection, a cancel by the worker, or a message so far
        // over the limit that the C core ended the stream before we could refuse it.
        let how = cancelled
            ? "stream broken (connection lost, cancelled, or a message over \(host.hardMessageLimit) bytes)"
            : "stream closed by the worker"
        logger.info("worker disconnected", metadata: [
            "how": "\(how)",
            "peer": "\(connection.peer)", "agent.types": "\(departure.agentTypes)",
            "subscriptions": "\(departure.subscriptionCount)", "unanswered": "\(departure.unanswered.count)",
        ])
    }
}
