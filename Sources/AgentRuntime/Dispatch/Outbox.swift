import AgentCore
import AgentPluginABI
import GRPCTransport

/// What the runtime writes to its host: answers to RPCs, and events its agents and plugins
/// publish, encoded in AutoGen's shapes (``OutboundCodec``) and handed to the connection.
final class Outbox: Sendable {
    private let connection: HostConnection

    init(connection: HostConnection) {
        self.connection = connection
    }

    /// Writes an encoded message on the live stream; false if the stream is down.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        connection.send(MessageBuffer(bytes))
    }

    /// Answers request `requestID` with an error.
    func answer(requestID: String, error: String) {
        send(OutboundCodec.errorResponse(requestID: requestID, error: error))
    }

    /// Answers request `requestID` with a payload.
    func answer(requestID: String, messageType: String, contentType: String, payload: UnsafeRawBufferPointer) {
        send(OutboundCodec.response(
            requestID: requestID, messageType: messageType, contentType: contentType, payload: payload))
    }

    /// Publishes an event as `sender` (nil: no sending agent). While the host is unreachable
    /// the event waits in the connection's bounded buffer.
    /// - Returns: AGENTD_OK when sent or buffered; AGENTD_INVALID_ARGUMENT for a topic type
    ///   AutoGen would refuse; AGENTD_UNAVAILABLE when the buffer or the send queue is full.
    /// - Parameter trace: the sending handler's trace context, carried as the event's
    ///   `traceparent`/`tracestate` attributes.
    func publish(sender: AgentID?, topicType: String, topicSource: String, messageType: String,
                 contentType: String, payload: UnsafeRawBufferPointer, trace: TraceContext? = nil) -> agentd_status {
        guard TopicID.isValidType(topicType) else { return AGENTD_INVALID_ARGUMENT }
        let bytes = OutboundCodec.event(
            id: OutboundCodec.newID(), topicType: topicType, topicSource: topicSource,
            senderType: sender?.type, senderKey: sender?.key, messageType: messageType,
            contentType: contentType, payload: payload, trace: trace)
        switch connection.send(MessageBuffer(bytes), kind: .event) {
        case .sent, .buffered: return AGENTD_OK
        case .refused, .full: return AGENTD_UNAVAILABLE
        }
    }
}
