import ProtoWire
import Testing

@_spi(Benchmarks) @testable import AgentRuntime

/// What a plugin's handler sees of one message from the host: the views ``IncomingMessage``
/// fills from the bytes, built both by the runtime's own encoder (``OutboundCodec``) and by
/// protobuf-c field by field (``HandBuilt``), as AutoGen's Python worker sends them.
@Suite("IncomingMessage: what a handler sees of a message from the host")
struct IncomingMessageTests {
    static func decode(_ bytes: [UInt8]) -> IncomingMessage? {
        bytes.withUnsafeBytes { IncomingMessage($0) }
    }

    static let json = Array(#"{"text": "héllo"}"#.utf8)
    /// A protobuf message's own bytes: `{int32 n = 1}` with n = 150.
    static let protoMessage: [UInt8] = [0x08, 0x96, 0x01]

    // MARK: Events

    @Test("a JSON event from the runtime's encoder: topic, id, message type, content type, sender and the payload")
    func jsonEvent() throws {
        let bytes = Self.json.withUnsafeBytes {
            OutboundCodec.event(
                id: "m-1", topicType: "greetings", topicSource: "sée/1", senderType: "greeter", senderKey: "g1",
                messageType: "Greeting", contentType: "application/json", payload: $0)
        }
        let message = try #require(Self.decode(bytes))
        #expect(message.kind == .event)
        #expect(message.topicType.string == "greetings")
        #expect(message.topicSource.string == "sée/1")
        #expect(message.messageID.string == "m-1")
        #expect(message.messageType.string == "Greeting")
        #expect(message.contentType.string == "application/json")
        #expect(message.senderType.string == "greeter")
        #expect(message.senderKey.string == "g1")
        #expect(Array(message.payload.buffer) == Self.json)
        #expect(message.targetType.isEmpty && message.targetKey.isEmpty && message.error.isEmpty)
    }

    @Test("an event as AutoGen's Python worker sends it: attributes in its order, JSON in binary_data")
    func autoGenEvent() throws {
        let bytes = HandBuilt.event(
            id: "0f8fad5b-d9cb-469f-a165-70867728950e", source: "default", type: "chat",
            attributes: [
                ("agagentsendertype", "assistant"), ("agagentsenderkey", "default"), ("agmsgkind", "publish"),
                ("datacontenttype", "application/json"), ("dataschema", "ChatMessage"),
                // Trace context AutoGen may add; not for plugins.
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            ],
            data: .binary(Self.json))
        let message = try #require(Self.decode(bytes))
        #expect(message.kind == .event)
        #expect(message.messageID.string == "0f8fad5b-d9cb-469f-a165-70867728950e")
        #expect(message.topicType.string == "chat")
        #expect(message.topicSource.string == "default")
        #expect(message.messageType.string == "ChatMessage")
        #expect(message.contentType.string == "application/json")
        #expect(message.senderType.string == "assistant")
        #expect(message.senderKey.string == "default")
        #expect(Array(message.payload.buffer) == Self.json)
    }

    @Test("AutoGen's \"unknown\"/\"unknown\" sender (a publish from outside any agent) reaches the handler as no sender")
    func unknownSender() throws {
        let fromPython = HandBuilt.event(
            id: "1", source: "s", type: "t",
            attributes: [("agagentsendertype", "unknown"), ("agagentsenderkey", "unknown"), ("dataschema", "Ping")],
            data: .binary(Array("{}".utf8)))
        // The runtime's own encoder writes the same for a publish without a sender.
        let fromRuntime = Array("{}".utf8).withUnsafeBytes {
            OutboundCodec.event(
                id: "2", topicType: "t", topicSource: "s", senderType: nil, senderKey: nil, messageType: "Ping",
                contentType: "application/json", payload: $0)
        }
        for bytes in [fromPython, fromRuntime] {
            let message = try #require(Self.decode(bytes))
            #expect(message.senderType.isEmpty)
            #expect(message.senderKey.isEmpty)
            #expect(message.messageType.string == "Ping")
        }
    }

    @Test("a sender whose type or key alone is \"unknown\" is a real agent and is kept")
    func agentNamedUnknown() throws {
        let bytes = HandBuilt.event(
            id: "1", source: "s", type: "t",
            attributes: [("agagentsendertype", "unknown"), ("agagentsenderkey", "k1")], data: .binary([]))
        let message = try #require(Self.decode(bytes))
        #expect(message.senderType.string == "unknown")
        #expect(message.senderKey.string == "k1")
    }

    @Test("a protobuf event arrives as the message's own bytes: proto_data's Any is unwrapped")
    func protobufEvent() throws {
        let fromRuntime = Self.protoMessage.withUnsafeBytes {
            OutboundCodec.event(
                id: "m-2", topicType: "numbers", topicSource: "k", senderType: "counter", senderKey: "c",
                messageType: "agents.test.Number", contentType: "application/x-protobuf", payload: $0)
        }
        let fromPython = HandBuilt.event(
            id: "m-2", source: "k", type: "numbers",
            attributes: [
                ("datacontenttype", "application/x-protobuf"), ("dataschema", "agents.test.Number"),
                ("agagentsendertype", "counter"), ("agagentsenderkey", "c"), ("agmsgkind", "publish"),
            ],
            data: .proto(typeURL: "type.googleapis.com/agents.test.Number", value: Self.protoMessage))
        for bytes in [fromRuntime, fromPython] {
            let message = try #require(Self.decode(bytes))
            #expect(message.kind == .event)
            #expect(message.messageType.string == "agents.test.Number")
            #expect(message.contentType.string == "application/x-protobuf")
            #expect(Array(message.payload.buffer) == Self.protoMessage)
        }
    }

    @Test("an event carrying text_data hands the text to the handler as its payload")
    func textEvent() throws {
        let bytes = HandBuilt.event(
            id: "1", source: "s", type: "t", attributes: [("datacontenttype", "text/plain"), ("dataschema", "Note")],
            data: .text("plain words"))
        let message = try #require(Self.decode(bytes))
        #expect(Array(message.payload.buffer) == Array("plain words".utf8))
        #expect(message.contentType.string == "text/plain")
    }

    @Test("an event with no attributes and no data is still an event, with every view empty")
    func bareEvent() throws {
        let message = try #require(Self.decode(HandBuilt.event(id: "", source: "", type: "", specVersion: "", attributes: [], data: .none)))
        #expect(message.kind == .event)
        for view in [message.topicType, message.topicSource, message.messageID, message.messageType,
                     message.contentType, message.senderType, message.senderKey] {
            #expect(view.isEmpty)
        }
        #expect(message.payload.buffer.isEmpty)
    }

    // MARK: Requests

    @Test("a JSON request from the runtime's encoder: id, sender, target, message type and payload")
    func jsonRequest() throws {
        let bytes = Self.json.withUnsafeBytes {
            OutboundCodec.request(
                id: "41", senderType: "caller", senderKey: "c1", targetType: "echo", targetKey: "e1",
                messageType: "Echo", contentType: "application/json", payload: $0)
        }
        let message = try #require(Self.decode(bytes))
        #expect(message.kind == .request)
        #expect(message.messageID.string == "41")
        #expect(message.senderType.string == "caller")
        #expect(message.senderKey.string == "c1")
        #expect(message.targetType.string == "echo")
        #expect(message.targetKey.string == "e1")
        #expect(message.messageType.string == "Echo")
        #expect(message.contentType.string == "application/json")
        #expect(Array(message.payload.buffer) == Self.json)
        #expect(message.topicType.isEmpty && message.topicSource.isEmpty && message.error.isEmpty)
    }

    @Test("a protobuf request's payload, an Any as AutoGen packs it, reaches the handler unwrapped")
    func protobufRequest() throws {
        let fromRuntime = Self.protoMessage.withUnsafeBytes {
            OutboundCodec.request(
                id: "7", senderType: nil, senderKey: nil, targetType: "proto", targetKey: "p",
                messageType: "agents.test.Number", contentType: "application/x-protobuf", payload: $0)
        }
        let fromPython = HandBuilt.request(
            id: "7", source: nil, target: ("proto", "p"),
            payload: .init(
                dataType: "agents.test.Number", contentType: "application/x-protobuf",
                data: HandBuilt.any(typeURL: "type.googleapis.com/agents.test.Number", value: Self.protoMessage)))
        for bytes in [fromRuntime, fromPython] {
            let message = try #require(Self.decode(bytes))
            #expect(message.kind == .request)
            #expect(message.messageType.string == "agents.test.Number")
            #expect(Array(message.payload.buffer) == Self.protoMessage)
        }
    }

    @Test("an Any with a type URL and no value is an empty message: the handler gets an empty payload")
    func emptyAny() throws {
        let bytes = HandBuilt.request(
            id: "8", source: nil, target: ("proto", "p"),
            payload: .init(
                dataType: "agents.test.Empty", contentType: "application/x-protobuf",
                data: HandBuilt.any(typeURL: "type.googleapis.com/agents.test.Empty", value: [])))
        let message = try #require(Self.decode(bytes))
        #expect(message.payload.buffer.isEmpty)
    }

    /// Protobuf payloads that are not a `google.protobuf.Any` (a sender that did not wrap its
    /// message): they must reach the handler byte for byte.
    static let unwrappedProtobufPayloads: [(String, [UInt8])] = [
        ("{int32 n = 1}", [0x08, 0x96, 0x01]),
        ("{string name = 1}", [0x0a, 0x03, 0x41, 0x64, 0x61]),
        ("{string name = 1; string text = 2}", [0x0a, 0x03, 0x41, 0x64, 0x61, 0x12, 0x02, 0x68, 0x69]),
        ("{int64 id = 1; bytes blob = 2}", [0x08, 0x07, 0x12, 0x02, 0xca, 0xfe]),
        ("{string name = 3}", [0x1a, 0x03, 0x41, 0x64, 0x61]),
        ("bytes that are not protobuf", [0xff, 0xff]),
    ]

    @Test("a protobuf payload that is not an Any reaches the handler unchanged", arguments: unwrappedProtobufPayloads)
    func protobufPayloadNotAnAny(_ shape: String, _ payload: [UInt8]) throws {
        let bytes = HandBuilt.request(
            id: "9", source: ("caller", "c"), target: ("proto", "p"),
            payload: .init(dataType: "agents.test.Thing", contentType: "application/x-protobuf", data: payload))
        let message = try #require(Self.decode(bytes))
        #expect(Array(message.payload.buffer) == payload, "\(shape)")
    }

    @Test("a JSON payload that happens to parse as protobuf is never unwrapped")
    func jsonIsNeverUnwrapped() throws {
        // The bytes of an Any, sent as JSON content: only protobuf content is unwrapped.
        let anyBytes = HandBuilt.any(typeURL: "type.googleapis.com/x.Y", value: [0x01])
        let bytes = HandBuilt.request(
            id: "10", source: nil, target: ("echo", "e"),
            payload: .init(dataType: "Echo", contentType: "application/json", data: anyBytes))
        let message = try #require(Self.decode(bytes))
        #expect(Array(message.payload.buffer) == anyBytes)
    }

    @Test("a request without a source (a call from outside any agent) and without a payload: empty views")
    func requestWithoutSourceOrPayload() throws {
        let bytes = HandBuilt.request(id: "11", source: nil, target: ("echo", "e"), payload: nil)
        let message = try #require(Self.decode(bytes))
        #expect(message.kind == .request)
        #expect(message.messageID.string == "11")
        #expect(message.senderType.isEmpty && message.senderKey.isEmpty)
        #expect(message.messageType.isEmpty && message.contentType.isEmpty)
        #expect(message.payload.buffer.isEmpty)
        #expect(message.targetType.string == "echo")
    }

    // MARK: Responses

    @Test("a response carries the request id, message type and payload; its error view is empty")
    func response() throws {
        let bytes = Self.json.withUnsafeBytes {
            OutboundCodec.response(requestID: "12", messageType: "EchoReply", contentType: "application/json", payload: $0)
        }
        let message = try #require(Self.decode(bytes))
        #expect(message.kind == .response)
        #expect(message.messageID.string == "12")
        #expect(message.messageType.string == "EchoReply")
        #expect(message.contentType.string == "application/json")
        #expect(Array(message.payload.buffer) == Self.json)
        #expect(message.error.isEmpty)
    }

    @Test("a response with an error carries the error text and no payload")
    func errorResponse() throws {
        for bytes in [
            OutboundCodec.errorResponse(requestID: "13", error: "agent type 'nobody' is not registered"),
            HandBuilt.response(id: "13", payload: nil, error: "agent type 'nobody' is not registered"),
        ] {
            let message = try #require(Self.decode(bytes))
            #expect(message.kind == .response)
            #expect(message.messageID.string == "13")
            #expect(message.error.string == "agent type 'nobody' is not registered")
            #expect(message.payload.buffer.isEmpty)
            #expect(message.messageType.isEmpty)
        }
    }

    @Test("a protobuf response's Any is unwrapped as a request's is")
    func protobufResponse() throws {
        let bytes = Self.protoMessage.withUnsafeBytes {
            OutboundCodec.response(
                requestID: "14", messageType: "agents.test.Number", contentType: "application/x-protobuf", payload: $0)
        }
        let message = try #require(Self.decode(bytes))
        #expect(Array(message.payload.buffer) == Self.protoMessage)
    }

    // MARK: What is not a message

    static let malformed: [(String, [UInt8])] = {
        let event = Array("{}".utf8).withUnsafeBytes {
            OutboundCodec.event(
                id: "m", topicType: "t", topicSource: "s", senderType: nil, senderKey: nil, messageType: "Ping",
                contentType: "application/json", payload: $0)
        }
        return [
            ("no bytes at all (a Message with no body)", []),
            ("a valid event cut short by one byte", Array(event.dropLast())),
            ("a valid event cut in half", Array(event.prefix(event.count / 2))),
            // Field 3 (cloudEvent), length-delimited, claiming 10 bytes of which 2 follow.
            ("a length that runs past the end", [0x1a, 0x0a, 0x0a, 0x00]),
            // Wire type 7 does not exist.
            ("an invalid wire type", [0x1f, 0x00]),
            // Field 3 (cloudEvent) as a varint instead of a message.
            ("the body with the wrong wire type", [0x18, 0x01]),
            // Only field 15, which Message does not have.
            ("only a field Message does not have", [0x78, 0x01]),
            ("random bytes", [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ]
    }()

    @Test("bytes that are not an agents.Message with a body decode to nothing", arguments: malformed)
    func malformedBytes(_ what: String, _ bytes: [UInt8]) {
        #expect(Self.decode(bytes) == nil, "\(what)")
    }

    @Test("a field this runtime does not know (a newer AutoGen's) is skipped, not refused")
    func unknownFieldsAreSkipped() throws {
        var bytes = Self.json.withUnsafeBytes {
            OutboundCodec.request(
                id: "15", senderType: nil, senderKey: nil, targetType: "echo", targetKey: "e", messageType: "Echo",
                contentType: "application/json", payload: $0)
        }
        var extra = ProtoWriter()
        extra.stringField(15, "from a newer protocol")  // field 15: not in agents.Message
        bytes += extra.bytes
        let message = try #require(Self.decode(bytes))
        #expect(message.kind == .request)
        #expect(Array(message.payload.buffer) == Self.json)
    }

    @Test("the views stay valid after the bytes they were decoded from are overwritten and freed")
    func viewsOwnTheirBytes() throws {
        var bytes = Self.json.withUnsafeBytes {
            OutboundCodec.event(
                id: "m-16", topicType: "t", topicSource: "s", senderType: "a", senderKey: "b", messageType: "Greeting",
                contentType: "application/json", payload: $0)
        }
        let message = try #require(Self.decode(bytes))
        _ = bytes.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 0x55) }
        bytes = []
        #expect(message.messageID.string == "m-16")
        #expect(message.messageType.string == "Greeting")
        #expect(Array(message.payload.buffer) == Self.json)
    }
}
