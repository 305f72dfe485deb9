import AgentCore
import ProtoWire
import GRPCTransport

extension DataChannel {
    /// Refuses a message whose routing field is over its ``FieldLimits``: a request is
    /// answered with an error naming the field; an event or a response is dropped. Each is
    /// logged naming the worker and the field (the first, then every 1,000th) and counted
    /// (`agentd_host_messages_dropped_total{reason="field_too_long"}`).
    func refuse(_ envelope: Envelope, _ violation: FieldLimits.Violation) {
        let count = limitRefusals.wrappingAdd(1, ordering: .relaxed).newValue
        if count == 1 || count % 1000 == 0 {
            logger.warning("message with a field over the host's length limit refused", metadata: [
                "peer": "\(connection.peer)", "field": "\(violation.field)", "field.bytes": "\(violation.bytes)",
                "limit.bytes": "\(violation.limit)", "refused": "\(count)",
            ])
        }
        guard case .request(let request) = envelope else { return }
        connection.sendAnswer(
            MessageBuffer(Envelope.errorResponse(requestID: request.requestID, error: "The request was refused: \(violation).")),
            limits: host.configuration.queueLimits, logger: logger)
    }
}
