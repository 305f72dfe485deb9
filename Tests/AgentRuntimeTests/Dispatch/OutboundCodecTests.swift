import Testing

@_spi(Benchmarks) @testable import AgentRuntime

/// What the runtime sends the host, read back with protobuf-c's generated code, field by field,
/// against what AutoGen's runtimes rely on (/work/shared/docs/protocol.md: "Publish →
/// CloudEvent", "RPC").
@Suite("OutboundCodec: what the runtime sends, as AutoGen reads it")
struct OutboundCodecTests {
    static let json = Array(#"{"name": "Ada"}"#.utf8)
    /// A protobuf message's own bytes: `{int32 n = 1}` with n = 150.
    static let protoMessage: [UInt8] = [0x08, 0x96, 0x01]

    static func event(
        senderType: String?, senderKey: String?, messageType: String = "Greeting",
        contentType: String = "application/json", payload: [UInt8] = json
    ) throws -> Unpacked.Event {
        let bytes = payload.withUnsafeBytes {
            OutboundCodec.event(
                id: "3b241101-e2bb-4255-8caf-4136c566a962", topicType: "greetings", topicSource: "room/1",
                senderType: senderType, senderKey: senderKey, messageType: messageType, contentType: contentType,
                payload: $0)
        }
        return try #require(Unpacked(bytes)?.event, "protobuf-c did not read a CloudEvent")
    }

    // MARK: Publishes

    @Test("a JSON publish is a CloudEvent with id, source, type, spec_version 1.0 and the payload in binary_data")
    func jsonEvent() throws {
        let event = try Self.event(senderType: "greeter", senderKey: "g1")
        #expect(event.id == "3b241101-e2bb-4255-8caf-4136c566a962")
        #expect(event.source == "room/1")
        #expect(event.type == "greetings")
        #expect(event.specVersion == "1.0")
        #expect(event.data == .binary(Self.json))
    }

    @Test("its attributes are exactly AutoGen's five, each a ce_string, each once")
    func eventAttributes() throws {
        let event = try Self.event(senderType: "greeter", senderKey: "g1")
        #expect(event.attributes.map(\.key).sorted()
                == ["agagentsenderkey", "agagentsendertype", "agmsgkind", "datacontenttype", "dataschema"])
        #expect(event.attributes.allSatisfy { $0.value != nil }, "every attribute is a ce_string: \(event.attributes)")
        #expect(event[attribute: "datacontenttype"] == "application/json")
        #expect(event[attribute: "dataschema"] == "Greeting")
        #expect(event[attribute: "agagentsendertype"] == "greeter")
        #expect(event[attribute: "agagentsenderkey"] == "g1")
        #expect(event[attribute: "agmsgkind"] == "publish")
    }

    @Test("a publish from outside any agent names the sender \"unknown\"/\"unknown\", as AutoGen's Python worker does")
    func eventWithoutSender() throws {
        let event = try Self.event(senderType: nil, senderKey: nil)
        #expect(event[attribute: "agagentsendertype"] == "unknown")
        #expect(event[attribute: "agagentsenderkey"] == "unknown")
    }

    @Test("a protobuf publish goes in proto_data: an Any of type.googleapis.com/<name> holding the message's bytes")
    func protobufEvent() throws {
        let event = try Self.event(
            senderType: "counter", senderKey: "c", messageType: "agents.test.Number",
            contentType: "application/x-protobuf", payload: Self.protoMessage)
        #expect(event.data == .proto(typeURL: "type.googleapis.com/agents.test.Number", value: Self.protoMessage))
        #expect(event[attribute: "dataschema"] == "agents.test.Number")
        #expect(event[attribute: "datacontenttype"] == "application/x-protobuf")
    }

    @Test("an empty JSON payload still travels in binary_data (the event keeps a data field)")
    func emptyPayload() throws {
        let event = try Self.event(senderType: "a", senderKey: "b", payload: [])
        #expect(event.data == .binary([]))
    }

    // MARK: RPCs

    @Test("a request names its id, source, target and payload (data_type, data_content_type, data)")
    func jsonRequest() throws {
        let bytes = Self.json.withUnsafeBytes {
            OutboundCodec.request(
                id: "17", senderType: "caller", senderKey: "c1", targetType: "greeter", targetKey: "default",
                messageType: "Greeting", contentType: "application/json", payload: $0)
        }
        let request = try #require(Unpacked(bytes)?.request)
        #expect(request.requestID == "17")
        #expect(request.source == .init(type: "caller", key: "c1"))
        #expect(request.target == .init(type: "greeter", key: "default"))
        #expect(request.payload == .init(dataType: "Greeting", contentType: "application/json", data: Self.json))
        #expect(request.metadataCount == 0)
    }

    @Test("a request from outside any agent has no source (AutoGen's optional source absent)")
    func requestWithoutSender() throws {
        let bytes = Self.json.withUnsafeBytes {
            OutboundCodec.request(
                id: "18", senderType: nil, senderKey: nil, targetType: "greeter", targetKey: "default",
                messageType: "Greeting", contentType: "application/json", payload: $0)
        }
        let request = try #require(Unpacked(bytes)?.request)
        #expect(request.source == nil)
        #expect(request.target == .init(type: "greeter", key: "default"))
    }

    @Test("a protobuf request's data is a packed Any of type.googleapis.com/<name>, as AutoGen sends and expects it")
    func protobufRequest() throws {
        let bytes = Self.protoMessage.withUnsafeBytes {
            OutboundCodec.request(
                id: "19", senderType: "caller", senderKey: "c1", targetType: "proto", targetKey: "p",
                messageType: "agents.test.Number", contentType: "application/x-protobuf", payload: $0)
        }
        let payload = try #require(Unpacked(bytes)?.request?.payload)
        #expect(payload.dataType == "agents.test.Number")
        #expect(payload.contentType == "application/x-protobuf")
        let any = try #require(Unpacked.any(payload.data), "the data is not a google.protobuf.Any")
        #expect(any.typeURL == "type.googleapis.com/agents.test.Number")
        #expect(any.value == Self.protoMessage)
    }

    @Test("a response carries the request id and the payload, and no error")
    func response() throws {
        let bytes = Self.json.withUnsafeBytes {
            OutboundCodec.response(requestID: "20", messageType: "GreetingReply", contentType: "application/json", payload: $0)
        }
        let response = try #require(Unpacked(bytes)?.response)
        #expect(response.requestID == "20")
        #expect(response.payload == .init(dataType: "GreetingReply", contentType: "application/json", data: Self.json))
        #expect(response.error == "")
    }

    @Test("a protobuf response's data is a packed Any, like a request's")
    func protobufResponse() throws {
        let bytes = Self.protoMessage.withUnsafeBytes {
            OutboundCodec.response(
                requestID: "21", messageType: "agents.test.Number", contentType: "application/x-protobuf", payload: $0)
        }
        let payload = try #require(Unpacked(bytes)?.response?.payload)
        let any = try #require(Unpacked.any(payload.data))
        #expect(any.typeURL == "type.googleapis.com/agents.test.Number")
        #expect(any.value == Self.protoMessage)
    }

    @Test("an error response carries the request id and the error text, and no payload")
    func errorResponse() throws {
        let bytes = OutboundCodec.errorResponse(requestID: "22", error: "boom: the handler failed on purpose")
        let response = try #require(Unpacked(bytes)?.response)
        #expect(response.requestID == "22")
        #expect(response.error == "boom: the handler failed on purpose")
        #expect(response.payload == nil)
    }

    @Test("an error response with no text still says error: AutoGen reads an empty error as success")
    func errorResponseWithoutText() throws {
        let response = try #require(Unpacked(OutboundCodec.errorResponse(requestID: "23", error: ""))?.response)
        #expect(!response.error.isEmpty)
    }

    // MARK: Message ids

    @Test("a new message id is a UUID in lowercase text form, as AutoGen's Python runtime makes them")
    func idFormat() {
        for _ in 0..<100 {
            let id = OutboundCodec.newID()
            let groups = id.split(separator: "-", omittingEmptySubsequences: false)
            #expect(groups.map(\.count) == [8, 4, 4, 4, 12], "\(id)")
            #expect(id.allSatisfy { $0 == "-" || $0.isHexDigit && !$0.isUppercase }, "\(id)")
        }
    }

    @Test("message ids are unique, also when drawn from many threads at once")
    func idsAreUnique() async {
        let perTask = 5_000
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 {
                group.addTask { (0..<perTask).map { _ in OutboundCodec.newID() } }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(ids.count == 8 * perTask)
        #expect(Set(ids).count == ids.count)
    }
}
