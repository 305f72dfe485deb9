import ProtoWire

// The protocol messages a test worker writes and reads, built and taken apart with
// `ProtoWriter`/`ProtoReader` from the field numbers of Protos/agent_worker.proto and
// Protos/cloudevent.proto. Builders write fields in field-number order, as protobuf encoders do.

/// An `agents.AgentId{type = 1, key = 2}`.
struct AgentRef: Hashable, Sendable, CustomStringConvertible {
    var type: String
    var key: String

    init(_ type: String, _ key: String) {
        self.type = type
        self.key = key
    }

    var description: String { "\(type)/\(key)" }

    func encode(into writer: inout ProtoWriter) {
        writer.stringField(1, type)
        writer.stringField(2, key)
    }
}

/// An `agents.Payload{data_type = 1, data_content_type = 2, data = 3}`.
struct Payload: Hashable, Sendable {
    var dataType: String
    var dataContentType: String
    var data: [UInt8]

    /// A JSON payload, as AutoGen's Python runtime sends every RPC.
    static func json(_ dataType: String, _ text: String) -> Payload {
        Payload(dataType: dataType, dataContentType: "application/json", data: Array(text.utf8))
    }

    var text: String { String(decoding: data, as: UTF8.self) }

    func encode(into writer: inout ProtoWriter) {
        writer.stringField(1, dataType)
        writer.stringField(2, dataContentType)
        writer.bytesField(3, data)
    }
}

/// A `google.protobuf.Any{type_url = 1, value = 2}`.
struct AnyMessage: Hashable, Sendable {
    var typeURL: String
    var value: [UInt8]
}

/// Builders of the `agents.Message{request = 1, response = 2, cloudEvent = 3}` a worker sends on
/// its data channel.
enum DataMessageBuilder {
    /// The attributes AutoGen's Python worker puts on a publish of a JSON message.
    static func pythonAttributes(dataSchema: String, contentType: String = "application/json") -> [(String, String)] {
        [
            ("datacontenttype", contentType), ("dataschema", dataSchema),
            ("agagentsendertype", "unknown"), ("agagentsenderkey", "unknown"), ("agmsgkind", "publish"),
        ]
    }

    /// A CloudEvent{id = 1, source = 2, spec_version = 3, type = 4, attributes = 5 (map of
    /// CloudEventAttributeValue{ce_string = 3}), binary_data = 6 | proto_data = 8}.
    static func cloudEvent(
        id: String, topicType: String, topicSource: String, attributes: [(String, String)],
        binaryData: [UInt8]? = nil, protoData: AnyMessage? = nil
    ) -> [UInt8] {
        var message = ProtoWriter()
        message.messageField(3) { event in
            event.stringField(1, id)
            event.stringField(2, topicSource)
            event.stringField(3, "1.0")
            event.stringField(4, topicType)
            for (key, value) in attributes {
                event.messageField(5) { entry in
                    entry.stringField(1, key)
                    entry.messageField(2) { $0.stringField(3, value) }
                }
            }
            if let binaryData { event.bytesField(6, binaryData) }
            if let protoData {
                event.messageField(8) { any in
                    any.stringField(1, protoData.typeURL)
                    any.bytesField(2, protoData.value)
                }
            }
        }
        return message.bytes
    }

    /// An RpcRequest{request_id = 1, source = 2, target = 3, method = 4, payload = 5, metadata = 6}.
    static func request(
        id: String, source: AgentRef?, target: AgentRef, method: String, payload: Payload,
        metadata: [(String, String)] = []
    ) -> [UInt8] {
        var message = ProtoWriter()
        message.messageField(1) { request in
            request.stringField(1, id)
            if let source { request.messageField(2) { source.encode(into: &$0) } }
            request.messageField(3) { target.encode(into: &$0) }
            request.stringField(4, method)
            request.messageField(5) { payload.encode(into: &$0) }
            writeMap(6, metadata, into: &request)
        }
        return message.bytes
    }

    /// An RpcResponse{request_id = 1, payload = 2, error = 3, metadata = 4}.
    static func response(
        id: String, payload: Payload?, error: String = "", metadata: [(String, String)] = []
    ) -> [UInt8] {
        var message = ProtoWriter()
        message.messageField(2) { response in
            response.stringField(1, id)
            if let payload { response.messageField(2) { payload.encode(into: &$0) } }
            response.stringField(3, error)
            writeMap(4, metadata, into: &response)
        }
        return message.bytes
    }

    /// A `map<string, string>` field: one entry message {key = 1, value = 2} per pair.
    static func writeMap(_ number: Int, _ pairs: [(String, String)], into writer: inout ProtoWriter) {
        for (key, value) in pairs {
            writer.messageField(number) { entry in
                entry.stringField(1, key)
                entry.stringField(2, value)
            }
        }
    }
}

/// A protobuf message read into its fields (nested messages stay as bytes until asked for).
struct ProtoFields: Sendable {
    enum Value: Sendable {
        case varint(UInt64)
        case bytes([UInt8])
        case fixed
    }

    private(set) var fields: [(number: Int, value: Value)] = []

    init(_ bytes: [UInt8]) throws {
        fields = try bytes.withUnsafeBytes { buffer in
            var reader = ProtoReader(buffer)
            var fields: [(number: Int, value: Value)] = []
            while let field = try reader.next() {
                switch field.value {
                case .varint(let value): fields.append((field.number, .varint(value)))
                case .bytes(let range): fields.append((field.number, .bytes(reader.bytes(range))))
                case .fixed32, .fixed64: fields.append((field.number, .fixed))
                }
            }
            return fields
        }
    }

    /// Every length-delimited value of field `number`, in order.
    func all(_ number: Int) -> [[UInt8]] {
        fields.compactMap { field in
            guard field.number == number, case .bytes(let bytes) = field.value else { return nil }
            return bytes
        }
    }

    /// The last length-delimited value of field `number` (protobuf's "last one wins").
    func bytes(_ number: Int) -> [UInt8]? { all(number).last }

    func string(_ number: Int) -> String { bytes(number).map { String(decoding: $0, as: UTF8.self) } ?? "" }

    func message(_ number: Int) throws -> ProtoFields? { try bytes(number).map(ProtoFields.init) }

    /// A `map<string, string>` field.
    func stringMap(_ number: Int) throws -> [String: String] {
        var map: [String: String] = [:]
        for entry in all(number) {
            let fields = try ProtoFields(entry)
            map[fields.string(1)] = fields.string(2)
        }
        return map
    }
}

extension AgentRef {
    init(_ fields: ProtoFields) { self.init(fields.string(1), fields.string(2)) }
}

extension Payload {
    init(_ fields: ProtoFields) {
        self.init(dataType: fields.string(1), dataContentType: fields.string(2), data: fields.bytes(3) ?? [])
    }
}

/// A CloudEvent a worker received.
struct ReceivedEvent: Sendable {
    /// The whole `agents.Message` as it arrived.
    var bytes: [UInt8]
    var id: String
    var topicType: String
    var topicSource: String
    var binaryData: [UInt8]?
}

/// An RpcRequest a worker received.
struct ReceivedRequest: Sendable {
    var bytes: [UInt8]
    var requestID: String
    var source: AgentRef?
    var target: AgentRef?
    var method: String
    var payload: Payload?
    var metadata: [String: String]
}

/// An RpcResponse a worker received.
struct ReceivedResponse: Sendable {
    var bytes: [UInt8]
    var requestID: String
    var payload: Payload?
    var error: String
    var metadata: [String: String]
}

/// One `agents.Message` a worker received on its data channel.
enum DataMessage: Sendable {
    case event(ReceivedEvent)
    case request(ReceivedRequest)
    case response(ReceivedResponse)
    /// Not a message this protocol defines (a host bug if it ever shows up).
    case unreadable([UInt8])

    init(_ bytes: [UInt8]) {
        do {
            let message = try ProtoFields(bytes)
            if let request = try message.message(1) {
                self = .request(ReceivedRequest(
                    bytes: bytes, requestID: request.string(1), source: try request.message(2).map(AgentRef.init),
                    target: try request.message(3).map(AgentRef.init), method: request.string(4),
                    payload: try request.message(5).map(Payload.init), metadata: try request.stringMap(6)))
            } else if let response = try message.message(2) {
                self = .response(ReceivedResponse(
                    bytes: bytes, requestID: response.string(1), payload: try response.message(2).map(Payload.init),
                    error: response.string(3), metadata: try response.stringMap(4)))
            } else if let event = try message.message(3) {
                self = .event(ReceivedEvent(
                    bytes: bytes, id: event.string(1), topicType: event.string(4), topicSource: event.string(2),
                    binaryData: event.bytes(6)))
            } else {
                self = .unreadable(bytes)
            }
        } catch {
            self = .unreadable(bytes)
        }
    }
}

/// A subscription as `GetSubscriptions` lists it.
struct SubscriptionRecord: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        /// `TypeSubscription` (field 2).
        case topicType
        /// `TypePrefixSubscription` (field 3).
        case topicTypePrefix
    }

    var id: String
    var kind: Kind
    /// The topic type, or the prefix.
    var topic: String
    var agentType: String

    /// An `agents.Subscription{id = 1; typeSubscription = 2 | typePrefixSubscription = 3}`,
    /// each `{topic_type(_prefix) = 1, agent_type = 2}`.
    var encoded: [UInt8] {
        var writer = ProtoWriter()
        writer.stringField(1, id)
        writer.messageField(kind == .topicType ? 2 : 3) { inner in
            inner.stringField(1, topic)
            inner.stringField(2, agentType)
        }
        return writer.bytes
    }

    init(id: String, kind: Kind, topic: String, agentType: String) {
        self.id = id
        self.kind = kind
        self.topic = topic
        self.agentType = agentType
    }

    init(_ fields: ProtoFields) throws {
        id = fields.string(1)
        if let inner = try fields.message(2) {
            kind = .topicType
            topic = inner.string(1)
            agentType = inner.string(2)
        } else {
            let inner = try fields.message(3)
            kind = .topicTypePrefix
            topic = inner?.string(1) ?? ""
            agentType = inner?.string(2) ?? ""
        }
    }

    var description: String { "\(id): \(kind == .topicType ? "topic" : "prefix") '\(topic)' -> \(agentType)" }
}

/// A `ControlMessage{rpc_id = 1, destination = 2, respond_to = 3, rpcMessage = 4 (Any)}`.
struct ControlMessage: Sendable {
    var rpcID: String
    var destination: String
    var respondTo: String
    var rpcMessage: AnyMessage?
    /// The message's bytes (as sent, or as received).
    var bytes: [UInt8]

    init(rpcID: String, destination: String, respondTo: String = "", rpcMessage: AnyMessage) {
        self.rpcID = rpcID
        self.destination = destination
        self.respondTo = respondTo
        self.rpcMessage = rpcMessage
        var writer = ProtoWriter()
        writer.stringField(1, rpcID)
        writer.stringField(2, destination)
        writer.stringField(3, respondTo)
        writer.messageField(4) { any in
            any.stringField(1, rpcMessage.typeURL)
            any.bytesField(2, rpcMessage.value)
        }
        bytes = writer.bytes
    }

    init(received bytes: [UInt8]) throws {
        let fields = try ProtoFields(bytes)
        rpcID = fields.string(1)
        destination = fields.string(2)
        respondTo = fields.string(3)
        rpcMessage = try fields.message(4).map { AnyMessage(typeURL: $0.string(1), value: $0.bytes(2) ?? []) }
        self.bytes = bytes
    }

    /// A `SaveStateRequest{agentId = 1}` packed in an Any.
    static func saveStateRequest(_ agent: AgentRef) -> AnyMessage {
        var writer = ProtoWriter()
        writer.messageField(1) { agent.encode(into: &$0) }
        return AnyMessage(typeURL: "type.googleapis.com/agents.SaveStateRequest", value: writer.bytes)
    }

    /// A `SaveStateResponse{state = 1, error = 2}` packed in an Any.
    static func saveStateResponse(state: String, error: String = "") -> AnyMessage {
        var writer = ProtoWriter()
        writer.stringField(1, state)
        writer.stringField(2, error)
        return AnyMessage(typeURL: "type.googleapis.com/agents.SaveStateResponse", value: writer.bytes)
    }

    /// A `LoadStateRequest{agentId = 1, state = 2}` packed in an Any.
    static func loadStateRequest(_ agent: AgentRef, state: String) -> AnyMessage {
        var writer = ProtoWriter()
        writer.messageField(1) { agent.encode(into: &$0) }
        writer.stringField(2, state)
        return AnyMessage(typeURL: "type.googleapis.com/agents.LoadStateRequest", value: writer.bytes)
    }
}
