import CAgentWire

extension ControlPlaneCodec {
    /// agentd's status request and its answer (`Protos/agentd_control.proto`, package `agentd`),
    /// as they travel in a `ControlMessage`'s `rpcMessage`: `agentd status` sends a
    /// `StatusRequest` to `clientid=<a runtime's client id>` through the host, and the runtime
    /// answers with a `StatusResponse` carrying its status as one JSON object.
    public enum StatusMessage: Sendable, Hashable {
        case request
        /// `json` is empty when `error` says why there is no status.
        case response(json: String, error: String)

        /// The type URL of a `StatusRequest` Any: `type.googleapis.com/agentd.StatusRequest`.
        public static let requestTypeURL = typeURLPrefix + String(cString: agentd__status_request__descriptor.name)
        /// The type URL of a `StatusResponse` Any.
        public static let responseTypeURL = typeURLPrefix + String(cString: agentd__status_response__descriptor.name)

        /// Whether an Any of type `typeURL` is a `StatusRequest` (only the name after the last `/`
        /// counts, as for the state messages).
        public static func isRequest(typeURL: String) -> Bool {
            AnyMessage(typeURL: typeURL, value: []).messageName == AnyMessage(typeURL: requestTypeURL, value: []).messageName
        }

        /// Whether an Any of type `typeURL` is a `StatusResponse`.
        public static func isResponse(typeURL: String) -> Bool {
            AnyMessage(typeURL: typeURL, value: []).messageName == AnyMessage(typeURL: responseTypeURL, value: []).messageName
        }
    }

    /// `message` packed in an Any with its type URL.
    public static func encodeStatusMessage(_ message: StatusMessage) -> AnyMessage {
        switch message {
        case .request:
            var request = Agentd__StatusRequest()
            agentd__status_request__init(&request)
            return AnyMessage(
                typeURL: StatusMessage.requestTypeURL,
                value: packed(&request, agentd__status_request__get_packed_size, agentd__status_request__pack))
        case .response(let json, let error):
            let value = withPackArena { arena -> [UInt8] in
                var response = Agentd__StatusResponse()
                agentd__status_response__init(&response)
                response.json = arena.cString(json)
                response.error = arena.cString(error)
                return packed(&response, agentd__status_response__get_packed_size, agentd__status_response__pack)
            }
            return AnyMessage(typeURL: StatusMessage.responseTypeURL, value: value)
        }
    }

    /// The status message `any` carries; nil if its type URL names neither.
    /// - Throws: ``MalformedMessage`` if its value is not a valid message of the type named.
    public static func decodeStatusMessage(_ any: AnyMessage) throws(MalformedMessage) -> StatusMessage? {
        let isRequest = StatusMessage.isRequest(typeURL: any.typeURL)
        guard isRequest || StatusMessage.isResponse(typeURL: any.typeURL) else { return nil }
        // (withUnsafeBytes rethrows untyped: the outcome comes out as a Result.)
        return try any.value.withUnsafeBytes { bytes in
            Result { () throws(MalformedMessage) -> StatusMessage in
                if isRequest {
                    return try unpacked(
                        bytes, agentd__status_request__descriptor, agentd__status_request__unpack,
                        agentd__status_request__free_unpacked
                    ) { _ in .request }
                }
                return try unpacked(
                    bytes, agentd__status_response__descriptor, agentd__status_response__unpack,
                    agentd__status_response__free_unpacked
                ) { .response(json: string($0.json), error: string($0.error)) }
            }
        }.get()
    }
}
