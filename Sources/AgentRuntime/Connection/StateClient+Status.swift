import AgentCore

extension StateClient {
    /// The status of the runtime connected to the host under `clientID`, as the JSON text it
    /// answers (see ``AgentRuntime/status()``): agentd's `StatusRequest`, sent to
    /// `clientid=<clientID>` on this client's control channel and routed there by the host.
    ///
    /// A worker that is not an agentd runtime never answers (AutoGen's Python workers drop
    /// what they do not know): then this throws ``Failure/Code/timedOut`` after `timeout`.
    /// - Throws: ``Failure``: the runtime's error, the channel's end, an answer of another kind,
    ///   or the timeout.
    public func runtimeStatus(ofClient clientID: String, timeout: Duration = .seconds(2)) async throws(Failure) -> String {
        let message = try await exchange(
            ControlPlaneCodec.encodeStatusMessage(.request), destination: "clientid=\(clientID)",
            action: "the status of client \(clientID)", timeout: timeout)
        let response: ControlPlaneCodec.StatusMessage?
        do {
            response = try message.rpcMessage.flatMap { try ControlPlaneCodec.decodeStatusMessage($0) }
        } catch {
            throw Failure(.unexpectedAnswer, "the answer is malformed: \(error)")
        }
        guard case .response(let json, let error) = response else {
            let type = message.rpcMessage?.typeURL ?? "no message"
            throw Failure(.unexpectedAnswer, "the answer carries \(type), not the agentd.StatusResponse the request asks for")
        }
        guard error.isEmpty else { throw Failure(.answeredWithError, error) }
        return json
    }
}
