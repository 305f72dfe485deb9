import AgentCore
import ProtoWire
import Testing

// Each control-plane message is checked against the other codec: what ControlPlaneCodec
// (protobuf-c) encodes must equal, byte for byte, what ProtoWire's hand-written ProtoWriter
// writes from the field numbers of Protos/agent_worker.proto, and what ProtoWriter writes must
// decode to the same values. A field encoded under the wrong number or in the wrong message
// fails both ways. (Both write fields in field-number order, as protobuf encoders do.)

@Suite("ControlPlaneCodec: the control-plane messages through protobuf-c")
struct ControlPlaneCodecTests {
    static let subscriptions = [
        Subscription(id: "sub-1", agentType: "greeter", kind: .topicType("greetings")),
        Subscription(id: "sub-2", agentType: "orders", kind: .topicTypePrefix("orders.")),
        Subscription(id: "sub-3", agentType: "all", kind: .topicTypePrefix("")),
        Subscription(id: "подписка", agentType: "агент", kind: .topicType("новости")),
    ]

    // MARK: RegisterAgent

    @Test("RegisterAgentTypeRequest{type = 1}", arguments: ["greeter", "my-agent.v2", "агент", ""])
    func registerAgentTypeRequest(agentType: String) throws {
        var expected = ProtoWriter()
        expected.stringField(1, agentType)
        #expect(ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: agentType) == expected.bytes)
        #expect(try decode(expected.bytes, ControlPlaneCodec.decodeRegisterAgentTypeRequest) == agentType)
    }

    @Test("a RegisterAgentTypeRequest's unknown fields are skipped")
    func registerAgentTypeRequestUnknownFields() throws {
        var request = ProtoWriter()
        request.varintField(7, 42)
        request.stringField(1, "greeter")
        request.stringField(9, "from a newer peer")
        #expect(try decode(request.bytes, ControlPlaneCodec.decodeRegisterAgentTypeRequest) == "greeter")
    }

    // MARK: AddSubscription

    @Test("AddSubscriptionRequest{subscription = 1: Subscription{id = 1; typeSubscription = 2 | typePrefixSubscription = 3}}",
          arguments: subscriptions)
    func addSubscriptionRequest(subscription: Subscription) throws {
        var expected = ProtoWriter()
        expected.messageField(1) { Self.writeSubscription(subscription, into: &$0) }
        #expect(ControlPlaneCodec.encodeAddSubscriptionRequest(subscription) == expected.bytes)
        #expect(try decode(expected.bytes, ControlPlaneCodec.decodeAddSubscriptionRequest) == subscription)
    }

    @Test("an AddSubscriptionRequest without a subscription decodes to nil")
    func addSubscriptionRequestWithoutSubscription() throws {
        #expect(try decode([], ControlPlaneCodec.decodeAddSubscriptionRequest) == nil)
        var unknownOnly = ProtoWriter()
        unknownOnly.stringField(5, "not a subscription")
        #expect(try decode(unknownOnly.bytes, ControlPlaneCodec.decodeAddSubscriptionRequest) == nil)
    }

    @Test("a subscription with neither a type nor a type-prefix subscription is invalid, named by its id")
    func emptySubscription() {
        var request = ProtoWriter()
        request.messageField(1) { $0.stringField(1, "s1") }
        let error = #expect(throws: SubscriptionError.self) {
            try decode(request.bytes, ControlPlaneCodec.decodeAddSubscriptionRequest)
        }
        #expect(error?.code == .invalid)
        #expect(error?.message == "subscription 's1' is empty: it has neither a type nor a type-prefix subscription")
    }

    @Test("a malformed AddSubscriptionRequest is an invalid subscription", arguments: [
        [0x0a, 0x05, 0x0a, 0x01],  // the subscription claims 5 bytes, 2 remain
        [0x0a, 0x04, 0x12, 0x02, 0x0a, 0x07],  // the TypeSubscription's topic type runs past its end
        [0x08, 0x01],  // subscription = 1 as a varint
    ] as [[UInt8]])
    func malformedAddSubscriptionRequest(bytes: [UInt8]) {
        let error = #expect(throws: SubscriptionError.self) {
            try decode(bytes, ControlPlaneCodec.decodeAddSubscriptionRequest)
        }
        #expect(error?.code == .invalid)
        #expect(
            error?.message
                == "malformed subscription: the \(bytes.count) bytes are not a valid agents.AddSubscriptionRequest")
    }

    // MARK: RemoveSubscription

    @Test("RemoveSubscriptionRequest{id = 1}", arguments: ["sub-1", "подписка", ""])
    func removeSubscriptionRequest(id: String) throws {
        var expected = ProtoWriter()
        expected.stringField(1, id)
        #expect(ControlPlaneCodec.encodeRemoveSubscriptionRequest(id: id) == expected.bytes)
        #expect(try decode(expected.bytes, ControlPlaneCodec.decodeRemoveSubscriptionRequest) == id)
    }

    // MARK: GetSubscriptions

    @Test("GetSubscriptionsResponse{repeated Subscription subscriptions = 1}, in order")
    func getSubscriptionsResponse() throws {
        var expected = ProtoWriter()
        for subscription in Self.subscriptions {
            expected.messageField(1) { Self.writeSubscription(subscription, into: &$0) }
        }
        #expect(ControlPlaneCodec.encodeGetSubscriptionsResponse(Self.subscriptions) == expected.bytes)
        #expect(try decode(expected.bytes, ControlPlaneCodec.decodeGetSubscriptionsResponse) == Self.subscriptions)
    }

    @Test("an empty GetSubscriptionsResponse is no bytes, and no bytes are no subscriptions")
    func emptyGetSubscriptionsResponse() throws {
        #expect(ControlPlaneCodec.encodeGetSubscriptionsResponse([]) == [])
        #expect(try decode([], ControlPlaneCodec.decodeGetSubscriptionsResponse) == [])
    }

    @Test("a GetSubscriptionsResponse listing an empty subscription is refused")
    func getSubscriptionsResponseWithEmptySubscription() {
        var response = ProtoWriter()
        response.messageField(1) { Self.writeSubscription(Self.subscriptions[0], into: &$0) }
        response.messageField(1) { $0.stringField(1, "hollow") }
        let error = #expect(throws: SubscriptionError.self) {
            try decode(response.bytes, ControlPlaneCodec.decodeGetSubscriptionsResponse)
        }
        #expect(error?.message.contains("'hollow'") == true)
    }

    // MARK: The messages without fields

    @Test("the responses of RegisterAgent, AddSubscription and RemoveSubscription and the GetSubscriptionsRequest carry no bytes")
    func emptyMessages() {
        #expect(ControlPlaneCodec.encodeRegisterAgentTypeResponse() == [])
        #expect(ControlPlaneCodec.encodeAddSubscriptionResponse() == [])
        #expect(ControlPlaneCodec.encodeRemoveSubscriptionResponse() == [])
        #expect(ControlPlaneCodec.encodeGetSubscriptionsRequest() == [])
    }

    // MARK: ControlMessage

    @Test("ControlMessage{rpc_id = 1, destination = 2, respond_to = 3, rpcMessage = 4: Any{type_url = 1, value = 2}}")
    func controlMessage() throws {
        // A SaveStateRequest{agentId = 1: AgentId{type = 1, key = 2}}, as a worker packs it.
        var saveState = ProtoWriter()
        saveState.messageField(1) { $0.stringField(1, "alpha"); $0.stringField(2, "key/with/slash") }
        let header = ControlPlaneCodec.ControlMessageHeader(
            rpcID: "save-1", destination: "agentid=alpha/key/with/slash", respondTo: "clientid=asker",
            typeURL: "type.googleapis.com/agents.SaveStateRequest")
        var expected = ProtoWriter()
        expected.stringField(1, header.rpcID)
        expected.stringField(2, header.destination)
        expected.stringField(3, header.respondTo)
        expected.messageField(4) { any in
            any.stringField(1, header.typeURL)
            any.bytesField(2, saveState.bytes)
        }
        #expect(
            ControlPlaneCodec.encodeControlMessage(
                rpcID: header.rpcID, destination: header.destination, respondTo: header.respondTo,
                typeURL: header.typeURL, value: saveState.bytes) == expected.bytes)
        #expect(try decode(expected.bytes, ControlPlaneCodec.decodeControlMessageHeader) == header)
    }

    @Test("a ControlMessage without an Any has an empty type URL")
    func controlMessageWithoutAny() throws {
        var message = ProtoWriter()
        message.stringField(1, "r")
        message.stringField(2, "clientid=c")
        #expect(
            try decode(message.bytes, ControlPlaneCodec.decodeControlMessageHeader)
                == ControlPlaneCodec.ControlMessageHeader(rpcID: "r", destination: "clientid=c", typeURL: ""))
    }

    @Test("an undeliverable SaveStateRequest is answered with a SaveStateResponse{state = 1, error = 2} carrying the error")
    func saveStateErrorResponse() throws {
        let request = ControlPlaneCodec.ControlMessageHeader(
            rpcID: "save-x", destination: "agentid=nobody/k", respondTo: "clientid=asker",
            typeURL: "type.googleapis.com/agents.SaveStateRequest")
        let answer = try #require(
            ControlPlaneCodec.errorResponse(to: request, error: "no control channel", destination: "clientid=asker"))
        let message = try WireFields(answer)
        #expect(message.numbers == [1, 2, 4])
        #expect(message.string(1) == "save-x")
        #expect(message.string(2) == "clientid=asker")
        let any = try WireFields(try #require(message.bytes(4)))
        #expect(any.string(1) == "type.googleapis.com/agents.SaveStateResponse")
        let response = try WireFields(try #require(any.bytes(2)))
        #expect(response.numbers == [2])
        #expect(response.string(2) == "no control channel")
    }

    @Test("an undeliverable LoadStateRequest is answered with a LoadStateResponse{error = 1} carrying the error")
    func loadStateErrorResponse() throws {
        let request = ControlPlaneCodec.ControlMessageHeader(
            rpcID: "load-x", destination: "clientid=gone", typeURL: "type.googleapis.com/agents.LoadStateRequest")
        let answer = try #require(
            ControlPlaneCodec.errorResponse(to: request, error: "no such client", destination: "clientid=asker"))
        let message = try WireFields(answer)
        #expect(message.string(1) == "load-x")
        #expect(message.string(2) == "clientid=asker")
        let any = try WireFields(try #require(message.bytes(4)))
        #expect(any.string(1) == "type.googleapis.com/agents.LoadStateResponse")
        let response = try WireFields(try #require(any.bytes(2)))
        #expect(response.numbers == [1])
        #expect(response.string(1) == "no such client")
    }

    @Test("responses and unknown messages get no error answer", arguments: [
        "type.googleapis.com/agents.SaveStateResponse", "type.googleapis.com/agents.LoadStateResponse",
        "type.googleapis.com/agents.Unknown", "",
    ])
    func noErrorResponse(typeURL: String) {
        let message = ControlPlaneCodec.ControlMessageHeader(rpcID: "r", destination: "clientid=gone", typeURL: typeURL)
        #expect(ControlPlaneCodec.errorResponse(to: message, error: "x", destination: "clientid=asker") == nil)
    }

    @Test("an undeliverable DeleteStateRequest (agentd's) is answered with a DeleteStateResponse{error = 1}")
    func deleteStateErrorResponse() throws {
        let request = ControlPlaneCodec.ControlMessageHeader(
            rpcID: "delete-x", destination: "agentid=nobody/k", respondTo: "clientid=asker",
            typeURL: "type.googleapis.com/agentd.DeleteStateRequest")
        let answer = try #require(
            ControlPlaneCodec.errorResponse(to: request, error: "no control channel", destination: "clientid=asker"))
        let message = try WireFields(answer)
        #expect(message.string(1) == "delete-x")
        let any = try WireFields(try #require(message.bytes(4)))
        #expect(any.string(1) == "type.googleapis.com/agentd.DeleteStateResponse")
        #expect(try WireFields(try #require(any.bytes(2))).string(1) == "no control channel")
    }

    // MARK: ControlMessage, whole

    @Test("a whole ControlMessage round-trips, its Any included, and matches the hand-written encoding")
    func wholeControlMessage() throws {
        let message = ControlPlaneCodec.ControlMessage(
            rpcID: "r-1", destination: "agentid=echo/k", respondTo: "clientid=c",
            rpcMessage: .init(typeURL: "type.googleapis.com/agents.SaveStateRequest", value: [0x0a, 0x00]))
        var expected = ProtoWriter()
        expected.stringField(1, "r-1")
        expected.stringField(2, "agentid=echo/k")
        expected.stringField(3, "clientid=c")
        expected.messageField(4) { any in
            any.stringField(1, "type.googleapis.com/agents.SaveStateRequest")
            any.bytesField(2, [0x0a, 0x00])
        }
        #expect(ControlPlaneCodec.encodeControlMessage(message) == expected.bytes)
        #expect(try decode(expected.bytes, ControlPlaneCodec.decodeControlMessage) == message)
        #expect(message.header == ControlPlaneCodec.ControlMessageHeader(
            rpcID: "r-1", destination: "agentid=echo/k", respondTo: "clientid=c",
            typeURL: "type.googleapis.com/agents.SaveStateRequest"))
    }

    @Test("a ControlMessage without an Any decodes with a nil rpcMessage and encodes without field 4")
    func wholeControlMessageWithoutAny() throws {
        let message = ControlPlaneCodec.ControlMessage(rpcID: "probe", destination: "clientid=me", rpcMessage: nil)
        let bytes = ControlPlaneCodec.encodeControlMessage(message)
        #expect(try WireFields(bytes).numbers == [1, 2])
        #expect(try decode(bytes, ControlPlaneCodec.decodeControlMessage) == message)
        // An Any that is present but empty stays present.
        var withEmptyAny = ProtoWriter()
        withEmptyAny.stringField(1, "r")
        withEmptyAny.messageField(4) { _ in }
        #expect(try decode(withEmptyAny.bytes, ControlPlaneCodec.decodeControlMessage).rpcMessage
            == .init(typeURL: "", value: []))
    }

    // MARK: State messages

    /// Each state message, and its fields written by hand from the field numbers of
    /// Protos/agent_worker.proto and Protos/agentd_control.proto.
    static let stateMessages: [(ControlPlaneCodec.StateMessage, String, @Sendable (inout ProtoWriter) -> Void)] = [
        (.saveStateRequest(agent: AgentID(type: "echo", key: "k/with/slash")), "agents.SaveStateRequest",
         { $0.messageField(1) { $0.stringField(1, "echo"); $0.stringField(2, "k/with/slash") } }),
        (.saveStateRequest(agent: nil), "agents.SaveStateRequest", { _ in }),
        (.saveStateResponse(state: #"{"count": 3, "name": "Ада ✓"}"#, error: ""), "agents.SaveStateResponse",
         { $0.stringField(1, #"{"count": 3, "name": "Ада ✓"}"#) }),
        (.saveStateResponse(state: "", error: "no such agent"), "agents.SaveStateResponse",
         { $0.stringField(2, "no such agent") }),
        (.loadStateRequest(agent: AgentID(type: "counter", key: ""), state: "[1, 2]"), "agents.LoadStateRequest",
         { $0.messageField(1) { $0.stringField(1, "counter") }; $0.stringField(2, "[1, 2]") }),
        (.loadStateResponse(error: ""), "agents.LoadStateResponse", { _ in }),
        (.loadStateResponse(error: "refused"), "agents.LoadStateResponse", { $0.stringField(1, "refused") }),
        (.deleteStateRequest(agent: AgentID(type: "echo", key: "k")), "agentd.DeleteStateRequest",
         { $0.messageField(1) { $0.stringField(1, "echo"); $0.stringField(2, "k") } }),
        (.deleteStateResponse(error: ""), "agentd.DeleteStateResponse", { _ in }),
        (.deleteStateResponse(error: "gone"), "agentd.DeleteStateResponse", { $0.stringField(1, "gone") }),
    ]

    @Test("each state message encodes to AutoGen's type URL and the hand-written fields, and decodes back",
          arguments: stateMessages.indices)
    func stateMessage(index: Int) throws {
        let (message, name, write) = Self.stateMessages[index]
        var expected = ProtoWriter()
        write(&expected)
        let any = ControlPlaneCodec.encodeStateMessage(message)
        #expect(any.typeURL == "type.googleapis.com/\(name)")
        #expect(any.messageName == name[...])
        #expect(any.value == expected.bytes)
        #expect(try ControlPlaneCodec.decodeStateMessage(any) == message)
        #expect(message.kind.typeURL == any.typeURL)
    }

    @Test("a state message is recognised by the name after the type URL's last '/', whatever the prefix")
    func stateMessageTypeURLPrefix() throws {
        let value = ControlPlaneCodec.encodeStateMessage(.loadStateResponse(error: "x")).value
        for typeURL in ["agents.LoadStateResponse", "example.com/x/agents.LoadStateResponse", "/agents.LoadStateResponse"] {
            #expect(try ControlPlaneCodec.decodeStateMessage(.init(typeURL: typeURL, value: value)) == .loadStateResponse(error: "x"))
        }
        for typeURL in ["", "type.googleapis.com/agents.Message", "type.googleapis.com/agents.LoadStateResponseX",
                        "type.googleapis.com/LoadStateResponse"] {
            #expect(try ControlPlaneCodec.decodeStateMessage(.init(typeURL: typeURL, value: value)) == nil)
        }
    }

    @Test("only requests have an error response, of the matching kind")
    func stateMessageErrorResponses() {
        typealias Kind = ControlPlaneCodec.StateMessage.Kind
        #expect(Kind.saveStateRequest.errorResponse("e") == .saveStateResponse(state: "", error: "e"))
        #expect(Kind.loadStateRequest.errorResponse("e") == .loadStateResponse(error: "e"))
        #expect(Kind.deleteStateRequest.errorResponse("e") == .deleteStateResponse(error: "e"))
        for kind in Kind.allCases where !kind.isRequest { #expect(kind.errorResponse("e") == nil) }
        #expect(Kind.allCases.filter(\.isRequest).count == 3)
    }

    @Test("a malformed state message is a MalformedMessage naming its type; a NUL in its state is refused")
    func malformedStateMessage() {
        let truncated = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try ControlPlaneCodec.decodeStateMessage(
                .init(typeURL: "type.googleapis.com/agents.SaveStateRequest", value: [0x0a, 0x05, 0x0a]))
        }
        #expect(truncated?.messageName == "agents.SaveStateRequest")
        var withNUL = ProtoWriter()
        withNUL.bytesField(2, Array("{\"a\": 1}\0tail".utf8))
        let nul = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try ControlPlaneCodec.decodeStateMessage(
                .init(typeURL: "type.googleapis.com/agents.LoadStateRequest", value: withNUL.bytes))
        }
        #expect(nul?.description.contains("agents.LoadStateRequest.state holds a NUL byte") == true)
        let delete = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try ControlPlaneCodec.decodeStateMessage(
                .init(typeURL: "type.googleapis.com/agentd.DeleteStateRequest", value: [0x08, 0x01]))
        }
        #expect(delete?.messageName == "agentd.DeleteStateRequest")
    }

    // MARK: Malformed input and C strings

    @Test("bytes protobuf-c cannot unpack are a MalformedMessage naming the message type and size")
    func malformed() {
        let truncated: [UInt8] = [0x0a, 0x09, 0x61]
        let register = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try decode(truncated, ControlPlaneCodec.decodeRegisterAgentTypeRequest)
        }
        #expect(register == ControlPlaneCodec.MalformedMessage(messageName: "agents.RegisterAgentTypeRequest", byteCount: 3))
        #expect(register?.description == "the 3 bytes are not a valid agents.RegisterAgentTypeRequest")
        let remove = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try decode([0x08, 0x01], ControlPlaneCodec.decodeRemoveSubscriptionRequest)
        }
        #expect(remove?.messageName == "agents.RemoveSubscriptionRequest")
        let control = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try decode([0x22, 0x02, 0x0a, 0x05], ControlPlaneCodec.decodeControlMessageHeader)
        }
        #expect(control?.messageName == "agents.ControlMessage")
        #expect(throws: SubscriptionError.self) {
            try decode([0x0a, 0x03, 0x0a], ControlPlaneCodec.decodeGetSubscriptionsResponse)
        }
    }

    @Test("a text field holding a NUL byte is refused, naming the field, instead of being read cut short")
    func nulInString() throws {
        var request = ProtoWriter()
        request.bytesField(1, Array("alpha\0beta".utf8))
        let refused = #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try decode(request.bytes, ControlPlaneCodec.decodeRegisterAgentTypeRequest)
        }
        #expect(refused?.description.contains("agents.RegisterAgentTypeRequest.type holds a NUL byte") == true)
        // Nested: the agent type inside a subscription inside the request.
        var nested = ProtoWriter()
        nested.messageField(1) { subscription in
            subscription.stringField(1, "s1")
            subscription.messageField(2) { $0.stringField(1, "topic"); $0.bytesField(2, Array("a\0b".utf8)) }
        }
        #expect(throws: SubscriptionError.self) {
            try decode(nested.bytes, ControlPlaneCodec.decodeAddSubscriptionRequest)
        }
        // A length-delimited field whose number does not fit 32 bits names no field: it is
        // left to protobuf-c, which refuses it (found by EnvelopeFuzz; it used to trap).
        var huge = ProtoWriter()
        huge.bytesField(1 << 40, Array("x".utf8))
        #expect(throws: ControlPlaneCodec.MalformedMessage.self) {
            try decode(huge.bytes, ControlPlaneCodec.decodeRegisterAgentTypeRequest)
        }
        // Without the NUL, the same request decodes.
        var fine = ProtoWriter()
        fine.bytesField(1, Array("greeter".utf8))
        #expect(try decode(fine.bytes, ControlPlaneCodec.decodeRegisterAgentTypeRequest) == "greeter")
    }

    // MARK: The other side

    /// `Subscription{id = 1; typeSubscription = 2 | typePrefixSubscription = 3}`, each
    /// `{topic_type(_prefix) = 1, agent_type = 2}`, written by hand.
    static func writeSubscription(_ subscription: Subscription, into writer: inout ProtoWriter) {
        writer.stringField(1, subscription.id)
        switch subscription.kind {
        case .topicType(let type):
            writer.messageField(2) { $0.stringField(1, type); $0.stringField(2, subscription.agentType) }
        case .topicTypePrefix(let prefix):
            writer.messageField(3) { $0.stringField(1, prefix); $0.stringField(2, subscription.agentType) }
        }
    }
}

/// `decoder` applied to `bytes`.
private func decode<Value>(_ bytes: [UInt8], _ decoder: (UnsafeRawBufferPointer) throws -> Value) throws -> Value {
    try bytes.withUnsafeBytes(decoder)
}

/// A message's top-level length-delimited fields, read by the hand-written ProtoReader.
private struct WireFields {
    var fields: [(number: Int, bytes: [UInt8])] = []

    init(_ message: [UInt8]) throws {
        fields = try message.withUnsafeBytes { buffer in
            var reader = ProtoReader(buffer)
            var fields: [(number: Int, bytes: [UInt8])] = []
            while let field = try reader.next() { fields.append((field.number, reader.bytes(try field.bytesRange()))) }
            return fields
        }
    }

    /// The field numbers, in the order they came.
    var numbers: [Int] { fields.map(\.number) }

    func bytes(_ number: Int) -> [UInt8]? { fields.last(where: { $0.number == number })?.bytes }

    func string(_ number: Int) -> String { bytes(number).map { String(decoding: $0, as: UTF8.self) } ?? "" }
}
