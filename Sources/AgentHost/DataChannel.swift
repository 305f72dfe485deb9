import AgentCore
import ProtoWire
import GRPCTransport
import Logging

/// One worker's `OpenChannel` stream: the per-message path.
///
/// Runs on the stream's poller thread. Each message is read only as far as routing needs
/// (``Envelope``); an event goes out to its recipients as the very bytes that came in; a
/// request or response is re-framed only to swap its request id.
final class DataChannel: ServerCallHandler {
    let host: AgentHost
    let connection: WorkerConnection
    private let logger: Logger

    init(host: AgentHost, connection: WorkerConnection) {
        self.host = host
        self.connection = connection
        var logger = host.logger
        logger[metadataKey: "client.id"] = "\(connection.clientID)"
        self.logger = logger
        if let replaced = host.table.attachData(connection) {
            logger.warning("a second data channel opened under the same client-id; the first is closed", metadata: [
                "peer": "\(connection.peer)", "previous.peer": "\(replaced.peer)",
            ])
            replaced.call.finish(Status(.aborted, "replaced by a newer channel with the same client-id"))
        }
        logger.info("worker connected", metadata: ["peer": "\(connection.peer)"])
    }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        message.withUnsafeBytes { bytes in
            let envelope: Envelope
            do {
                envelope = try Envelope.parse(bytes)
            } catch {
                logger.warning("malformed message dropped", metadata: [
                    "error": "\(error)", "message.bytes": "\(bytes.count)",
                ])
                return
            }
            if bytes.count > host.configuration.maxMessageBytes {
                refuseOversized(envelope, size: bytes.count)
                return
            }
            switch envelope {
            case .event(let event): publish(message, event)
            case .request(let request): forward(bytes, request)
            case .response(let response): reply(bytes, response)
            }
        }
    }

    private func publish(_ message: MessageBuffer, _ event: CloudEventHeader) {
        let limits = host.configuration.queueLimits
        for recipient in host.table.recipients(ofTopicType: event.topicType) {
            recipient.sendEvent(message, limits: limits, logger: logger)
        }
    }

    private func forward(_ bytes: UnsafeRawBufferPointer, _ request: RpcRequestHeader) {
        let target = AgentID(type: request.targetType, key: request.targetKey)
        let route = host.table.routeRequest(
            from: connection, requestID: request.requestID, target: target,
            deadline: .now + host.configuration.rpcTimeout)
        switch route {
        case .forward(let hostID, let destination):
            do {
                let rewritten = try Envelope.replacingRequestID(
                    in: bytes, messageField: 1, body: request.body, with: String(hostID))
                let limits = host.configuration.queueLimits
                switch destination.call.send(MessageBuffer(rewritten), maxMessages: limits.messages, maxBytes: limits.bytes) {
                case .queued:
                    break
                case .full:
                    if case .deliver(let pending) = host.table.routeResponse(hostRequestID: hostID, responderClientID: destination.clientID) {
                        AgentHost.answer(pending, error: "The worker serving \(target) is overloaded (\(limits.messages) messages wait for it); the request was not delivered.")
                    }
                case .closed:
                    // The destination's stream is ending; its departure answers the caller.
                    logger.debug("request to a closing channel", metadata: ["agent.id": "\(target)"])
                }
            } catch {
                answer(request.requestID, "Malformed request to \(target): \(error)")
            }
        case .unknownAgentType:
            answer(request.requestID, "Agent type '\(request.targetType)' is not registered with the host (request to \(target)).")
        case .ownerNotConnected(let owner):
            answer(request.requestID, "Agent type '\(request.targetType)' belongs to client \(owner), which has no open channel (request to \(target)).")
        }
    }

    private func reply(_ bytes: UnsafeRawBufferPointer, _ response: RpcResponseHeader) {
        guard let hostID = UInt64(response.requestID) else {
            logger.warning("response with a request id the host never issued dropped", metadata: ["request.id": "\(response.requestID)"])
            return
        }
        switch host.table.routeResponse(hostRequestID: hostID, responderClientID: connection.clientID) {
        case .deliver(let request):
            do {
                let rewritten = try Envelope.replacingRequestID(
                    in: bytes, messageField: 2, body: response.body, with: request.originalRequestID)
                _ = request.caller.send(MessageBuffer(rewritten))
            } catch {
                AgentHost.answer(request, error: "The answer from \(request.target) was malformed: \(error)")
            }
        case .unknown:
            logger.debug("response to no waiting request dropped (answered already, or timed out)", metadata: ["request.id": "\(response.requestID)"])
        case .wrongResponder(let request):
            logger.warning("response from a client the request was not sent to dropped", metadata: [
                "request.id": "\(response.requestID)", "agent.id": "\(request.target)",
            ])
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
               case .deliver(let request) = host.table.routeResponse(hostRequestID: hostID, responderClientID: connection.clientID) {
                AgentHost.answer(request, error: "The answer from \(request.target) is \(size) bytes, over the host's limit of \(limit) bytes.")
            }
        case .event:
            break
        }
    }

    private func answer(_ requestID: String, _ error: String) {
        _ = connection.send(MessageBuffer(Envelope.errorResponse(requestID: requestID, error: error)))
    }

    func callDidHalfClose(_ call: ServerCall) {
        call.finish(.ok)
    }

    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        guard let departure = host.table.detachData(connection) else { return }
        for request in departure.unanswered {
            AgentHost.answer(request, error: "The worker serving \(request.target) disconnected before answering.")
        }
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
