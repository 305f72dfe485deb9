import AgentCore
import Testing

@Suite("agentd.StatusRequest and StatusResponse in a ControlMessage")
struct StatusMessageTests {
    @Test("a request and a response round-trip through a ControlMessage, with their type URLs")
    func roundTrip() throws {
        for message in [ControlPlaneCodec.StatusMessage.request, .response(json: #"{"a":"é\n"}"#, error: ""),
                        .response(json: "", error: "too large")] {
            let any = ControlPlaneCodec.encodeStatusMessage(message)
            let bytes = ControlPlaneCodec.encodeControlMessage(.init(
                rpcID: "r", destination: "clientid=x", respondTo: "clientid=y", rpcMessage: any))
            let decoded = try bytes.withUnsafeBytes { try ControlPlaneCodec.decodeControlMessage($0) }
            #expect(try decoded.rpcMessage.flatMap { try ControlPlaneCodec.decodeStatusMessage($0) } == message)
        }
        #expect(ControlPlaneCodec.StatusMessage.requestTypeURL == "type.googleapis.com/agentd.StatusRequest")
        #expect(ControlPlaneCodec.StatusMessage.responseTypeURL == "type.googleapis.com/agentd.StatusResponse")
        #expect(ControlPlaneCodec.StatusMessage.isRequest(typeURL: "other.prefix/agentd.StatusRequest"))
    }

    @Test("a state message is no status message, and the other way round")
    func distinct() throws {
        let save = ControlPlaneCodec.encodeStateMessage(.saveStateRequest(agent: nil))
        #expect(try ControlPlaneCodec.decodeStatusMessage(save) == nil)
        #expect(try ControlPlaneCodec.decodeStateMessage(ControlPlaneCodec.encodeStatusMessage(.request)) == nil)
    }

    @Test("a malformed StatusResponse is refused")
    func malformed() {
        let bad = ControlPlaneCodec.AnyMessage(typeURL: ControlPlaneCodec.StatusMessage.responseTypeURL, value: [0x0a, 0x05, 0x41])
        #expect(throws: ControlPlaneCodec.MalformedMessage.self) { try ControlPlaneCodec.decodeStatusMessage(bad) }
    }
}
