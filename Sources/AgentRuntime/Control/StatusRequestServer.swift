import AgentCore
import Logging

/// Answers agentd's `StatusRequest` (what `agentd status` sends to `clientid=<this runtime>`)
/// with the runtime's status (``AgentRuntime/status()``), as it comes off the control channel
/// (``HostControlChannel``), beside the ``StateRequestServer`` that answers the state requests.
///
/// Every request with a `respond_to` gets one answer: `ControlMessage{rpc_id: the request's,
/// destination: its respond_to, rpcMessage: Any(StatusResponse{json})}`; an answer that would
/// be over the message size limit is replaced by a `StatusResponse` whose `error` gives both
/// sizes. The status is gathered off the control channel's thread, in a task of its own.
final class StatusRequestServer: Sendable {
    private let status: @Sendable () -> JSONValue
    private let maxMessageBytes: Int
    private let logger: Logger

    /// - Parameters:
    ///   - status: the runtime's status now.
    ///   - maxMessageBytes: the largest answer that may be sent (the runtime's message size
    ///     limit).
    init(status: @escaping @Sendable () -> JSONValue, maxMessageBytes: Int, logger: Logger) {
        self.status = status
        self.maxMessageBytes = maxMessageBytes
        self.logger = logger
    }

    /// Whether `message` is a status request, and so this server's to answer.
    static func serves(_ message: ControlPlaneCodec.ControlMessage) -> Bool {
        message.rpcMessage.map { ControlPlaneCodec.StatusMessage.isRequest(typeURL: $0.typeURL) } ?? false
    }

    /// Answers `message`, a status request: `reply` receives the encoded answer (a
    /// `ControlMessage`) once, later, from another thread; or never, when the request has no
    /// `respond_to` (logged).
    func serve(_ message: ControlPlaneCodec.ControlMessage, reply: @escaping @Sendable ([UInt8]) -> Void) {
        guard !message.respondTo.isEmpty else {
            logger.warning("status request without respond_to dropped: there is nowhere to send its answer", metadata: [
                "control.rpc_id": "\(message.rpcID)",
            ])
            return
        }
        let (status, limit, logger) = (self.status, maxMessageBytes, self.logger)
        Task {
            var answer = Self.answer(to: message, .response(json: status().text, error: ""))
            if answer.count > limit {
                logger.warning("status answer over the message size limit replaced by an error", metadata: [
                    "control.rpc_id": "\(message.rpcID)", "message.bytes": "\(answer.count)", "limit": "\(limit)",
                ])
                answer = Self.answer(to: message, .response(
                    json: "",
                    error: "the status is \(answer.count) bytes, over the message size limit of \(limit) bytes"))
            }
            reply(answer)
        }
    }

    /// `response` in a `ControlMessage` answering `request`.
    private static func answer(
        to request: ControlPlaneCodec.ControlMessage, _ response: ControlPlaneCodec.StatusMessage
    ) -> [UInt8] {
        ControlPlaneCodec.encodeControlMessage(.init(
            rpcID: request.rpcID, destination: request.respondTo,
            rpcMessage: ControlPlaneCodec.encodeStatusMessage(response)))
    }
}
