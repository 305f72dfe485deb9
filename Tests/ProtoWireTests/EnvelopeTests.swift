import ProtoWire
import Testing

@Suite("Envelope: the routing view of agents.Message")
struct EnvelopeTests {
    /// Message{request: RpcRequest{request_id, source, target{type,key}, method, payload, metadata}}
    static func request(id: String) -> [UInt8] {
        var message = ProtoWriter()
        message.messageField(1) { request in
            request.stringField(1, id)
            request.messageField(2) { $0.stringField(1, "caller"); $0.stringField(2, "k") }
            request.messageField(3) { $0.stringField(1, "echo"); $0.stringField(2, "default") }
            request.stringField(4, "Echo")
            request.messageField(5) { payload in
                payload.stringField(1, "Echo")
                payload.stringField(2, "application/json")
                payload.bytesField(3, Array(#"{"text": "hi"}"#.utf8))
            }
            request.messageField(6) { $0.stringField(1, "traceparent"); $0.stringField(2, "00-abc") }
        }
        return message.bytes
    }

    @Test("an RpcRequest's id and target are read; replacing the id keeps every other byte")
    func requestRewrite() throws {
        let original = Self.request(id: "7")
        let header = try original.withUnsafeBytes { bytes -> RpcRequestHeader in
            guard case .request(let header) = try Envelope.parse(bytes) else { throw WireError("not a request", at: 0) }
            return header
        }
        #expect(header.requestID == "7")
        #expect(header.targetType == "echo")
        #expect(header.targetKey == "default")
        let rewritten = try original.withUnsafeBytes {
            try Envelope.replacingRequestID(in: $0, messageField: 1, body: header.body, with: "host-42")
        }
        #expect(rewritten == Self.request(id: "host-42"))
    }

    @Test("a CloudEvent's topic is read")
    func event() throws {
        var message = ProtoWriter()
        message.messageField(3) { event in
            event.stringField(1, "id-1")
            event.stringField(2, "source-1")
            event.stringField(3, "1.0")
            event.stringField(4, "greetings")
            event.bytesField(6, Array("{}".utf8))
        }
        guard case .event(let header) = try message.bytes.withUnsafeBytes({ try Envelope.parse($0) }) else {
            Issue.record("not an event")
            return
        }
        #expect(header.topicType == "greetings")
        #expect(header.topicSource == "source-1")
        #expect(header.id == "id-1")
    }

    @Test("an error response carries the request id and the error text")
    func errorResponse() throws {
        let bytes = Envelope.errorResponse(requestID: "3", error: "Agent type 'nope' is not registered.")
        guard case .response(let header) = try bytes.withUnsafeBytes({ try Envelope.parse($0) }) else {
            Issue.record("not a response")
            return
        }
        #expect(header.requestID == "3")
    }

    @Test("malformed input is refused with the offset of the problem", arguments: [
        [UInt8]([0x0a, 0x05, 0x0a]),        // request claims 5 bytes, 1 remains
        [0x0a, 0x02, 0x0a, 0x09],           // request id claims 9 bytes
        [0xff, 0xff, 0xff],                 // truncated varint key
        [0x00, 0x00],                        // field number 0
        [0x1a, 0x00, 0x0b],                 // wire type 3 (groups) is not supported
        [],                                  // nothing at all
    ])
    func malformed(bytes: [UInt8]) {
        #expect(throws: WireError.self) { try bytes.withUnsafeBytes { _ = try Envelope.parse($0) } }
    }
}
