import CAgentWire
import Foundation

// `agents.Message`s built and read with protobuf-c's generated code (CAgentWire), not with the
// runtime's own encoder: tests of the runtime's decoding feed it bytes it did not make, and
// tests of its encoding read them back the way any protobuf peer would.

/// C memory for a message built by hand; all of it is freed with the arena.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit {
        for block in blocks { free(block) }
    }

    /// A NUL-terminated copy of `text`.
    func string(_ text: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(text)!
        blocks.append(UnsafeMutableRawPointer(copy))
        return copy
    }

    func bytes(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        let copy = malloc(max(1, bytes.count))!
        blocks.append(copy)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress { copy.copyMemory(from: base, byteCount: source.count) }
        }
        return ProtobufCBinaryData(len: bytes.count, data: copy.assumingMemoryBound(to: UInt8.self))
    }

    /// `value` in C memory.
    func object<T>(_ value: T) -> UnsafeMutablePointer<T> {
        array([value])
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T> {
        let memory = malloc(max(1, values.count) * MemoryLayout<T>.stride)!
        blocks.append(memory)
        let typed = memory.bindMemory(to: T.self, capacity: max(1, values.count))
        typed.initialize(from: values, count: values.count)
        return typed
    }
}

/// Builds `agents.Message` bytes field by field with protobuf-c.
enum HandBuilt {
    /// What a CloudEvent carries as its data.
    enum EventData {
        case none
        case binary([UInt8])
        case text(String)
        case proto(typeURL: String, value: [UInt8])
    }

    /// An RPC's `Payload`.
    struct Payload {
        var dataType: String
        var contentType: String
        var data: [UInt8]
    }

    /// `Message{cloudEvent}` with `attributes` as `ce_string`s, in the order given.
    static func event(
        id: String, source: String, type: String, specVersion: String = "1.0",
        attributes: [(String, String)], data: EventData
    ) -> [UInt8] {
        let arena = CArena()
        var event = Io__Cloudevents__V1__CloudEvent()
        io__cloudevents__v1__cloud_event__init(&event)
        event.id = arena.string(id)
        event.source = arena.string(source)
        event.spec_version = arena.string(specVersion)
        event.type = arena.string(type)
        let entries = attributes.map { key, text -> UnsafeMutablePointer<Io__Cloudevents__V1__CloudEvent__AttributesEntry>? in
            var value = Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue()
            io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&value)
            value.attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING
            value.ce_string = arena.string(text)
            var entry = Io__Cloudevents__V1__CloudEvent__AttributesEntry()
            io__cloudevents__v1__cloud_event__attributes_entry__init(&entry)
            entry.key = arena.string(key)
            entry.value = arena.object(value)
            return arena.object(entry)
        }
        event.n_attributes = entries.count
        event.attributes = entries.isEmpty ? nil : arena.array(entries)
        switch data {
        case .none:
            break
        case .binary(let bytes):
            event.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA
            event.binary_data = arena.bytes(bytes)
        case .text(let text):
            event.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA
            event.text_data = arena.string(text)
        case .proto(let typeURL, let value):
            var any = Google__Protobuf__Any()
            google__protobuf__any__init(&any)
            any.type_url = arena.string(typeURL)
            any.value = arena.bytes(value)
            event.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA
            event.proto_data = arena.object(any)
        }
        var message = Agents__Message()
        agents__message__init(&message)
        message.message_case = AGENTS__MESSAGE__MESSAGE_CLOUD_EVENT
        message.cloudevent = arena.object(event)
        return pack(&message)
    }

    /// `Message{request}`; nil `source`, `target` or `payload` leave the field out.
    static func request(
        id: String, source: (type: String, key: String)?, target: (type: String, key: String)?, payload: Payload?
    ) -> [UInt8] {
        let arena = CArena()
        var request = Agents__RpcRequest()
        agents__rpc_request__init(&request)
        request.request_id = arena.string(id)
        request.source = source.map { arena.object(agentID($0.type, $0.key, arena)) }
        request.target = target.map { arena.object(agentID($0.type, $0.key, arena)) }
        request.payload = payload.map { arena.object(build($0, arena)) }
        var message = Agents__Message()
        agents__message__init(&message)
        message.message_case = AGENTS__MESSAGE__MESSAGE_REQUEST
        message.request = arena.object(request)
        return pack(&message)
    }

    /// `Message{response}`.
    static func response(id: String, payload: Payload?, error: String) -> [UInt8] {
        let arena = CArena()
        var response = Agents__RpcResponse()
        agents__rpc_response__init(&response)
        response.request_id = arena.string(id)
        response.payload = payload.map { arena.object(build($0, arena)) }
        response.error = arena.string(error)
        var message = Agents__Message()
        agents__message__init(&message)
        message.message_case = AGENTS__MESSAGE__MESSAGE_RESPONSE
        message.response = arena.object(response)
        return pack(&message)
    }

    /// A packed `google.protobuf.Any`, as AutoGen wraps an RPC's protobuf payload.
    static func any(typeURL: String, value: [UInt8]) -> [UInt8] {
        let arena = CArena()
        var any = Google__Protobuf__Any()
        google__protobuf__any__init(&any)
        any.type_url = arena.string(typeURL)
        any.value = arena.bytes(value)
        var bytes = [UInt8](repeating: 0, count: google__protobuf__any__get_packed_size(&any))
        let written = bytes.withUnsafeMutableBufferPointer { google__protobuf__any__pack(&any, $0.baseAddress) }
        precondition(written == bytes.count)
        return bytes
    }

    private static func agentID(_ type: String, _ key: String, _ arena: CArena) -> Agents__AgentId {
        var id = Agents__AgentId()
        agents__agent_id__init(&id)
        id.type = arena.string(type)
        id.key = arena.string(key)
        return id
    }

    private static func build(_ payload: Payload, _ arena: CArena) -> Agents__Payload {
        var body = Agents__Payload()
        agents__payload__init(&body)
        body.data_type = arena.string(payload.dataType)
        body.data_content_type = arena.string(payload.contentType)
        body.data = arena.bytes(payload.data)
        return body
    }

    private static func pack(_ message: inout Agents__Message) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: agents__message__get_packed_size(&message))
        let written = bytes.withUnsafeMutableBufferPointer { agents__message__pack(&message, $0.baseAddress) }
        precondition(written == bytes.count)
        return bytes
    }
}

/// An `agents.Message` unpacked by protobuf-c (`agents__message__unpack`) and copied into Swift
/// values: what any protobuf peer, AutoGen's included, reads off the bytes.
enum Unpacked: Equatable {
    case event(Event)
    case request(Request)
    case response(Response)

    struct Event: Equatable {
        var id: String
        var source: String
        var specVersion: String
        var type: String
        /// Every attribute in wire order; the value is nil when it is not a `ce_string`.
        var attributes: [Attribute]
        var data: Data

        struct Attribute: Equatable {
            var key: String
            var value: String?
        }

        enum Data: Equatable {
            case none
            case binary([UInt8])
            case text(String)
            case proto(typeURL: String, value: [UInt8])
        }

        /// The string value of attribute `key` (nil if absent or not a string).
        subscript(attribute key: String) -> String? {
            attributes.first { $0.key == key }?.value
        }
    }

    struct AgentRef: Equatable {
        var type: String
        var key: String
    }

    struct Payload: Equatable {
        var dataType: String
        var contentType: String
        var data: [UInt8]
    }

    struct Request: Equatable {
        var requestID: String
        var source: AgentRef?
        var target: AgentRef?
        var payload: Payload?
        var metadataCount: Int
    }

    struct Response: Equatable {
        var requestID: String
        var payload: Payload?
        var error: String
        var metadataCount: Int
    }

    /// Unpacks `bytes`; nil if protobuf-c refuses them or they carry no body.
    init?(_ bytes: [UInt8]) {
        guard let message = bytes.withUnsafeBufferPointer({ buffer in
            agents__message__unpack(nil, buffer.count, buffer.baseAddress ?? UnsafePointer(bitPattern: 1))
        }) else { return nil }
        defer { agents__message__free_unpacked(message, nil) }
        switch message.pointee.message_case {
        case AGENTS__MESSAGE__MESSAGE_CLOUD_EVENT:
            guard let event = message.pointee.cloudevent?.pointee else { return nil }
            var attributes: [Event.Attribute] = []
            for index in 0..<event.n_attributes {
                guard let entry = event.attributes[index]?.pointee else { continue }
                let value = entry.value?.pointee
                let text = value?.attr_case == IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING
                    ? Self.text(value?.ce_string) : nil
                attributes.append(.init(key: Self.text(entry.key), value: text))
            }
            let data: Event.Data
            switch event.data_case {
            case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA: data = .binary(Self.bytes(event.binary_data))
            case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA: data = .text(Self.text(event.text_data))
            case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
                let any = event.proto_data?.pointee
                data = .proto(typeURL: Self.text(any?.type_url), value: any.map { Self.bytes($0.value) } ?? [])
            default: data = .none
            }
            self = .event(Event(
                id: Self.text(event.id), source: Self.text(event.source), specVersion: Self.text(event.spec_version),
                type: Self.text(event.type), attributes: attributes, data: data))
        case AGENTS__MESSAGE__MESSAGE_REQUEST:
            guard let request = message.pointee.request?.pointee else { return nil }
            self = .request(Request(
                requestID: Self.text(request.request_id), source: request.source.map(Self.agent),
                target: request.target.map(Self.agent), payload: request.payload.map(Self.payload),
                metadataCount: request.n_metadata))
        case AGENTS__MESSAGE__MESSAGE_RESPONSE:
            guard let response = message.pointee.response?.pointee else { return nil }
            self = .response(Response(
                requestID: Self.text(response.request_id), payload: response.payload.map(Self.payload),
                error: Self.text(response.error), metadataCount: response.n_metadata))
        default:
            return nil
        }
    }

    var event: Event? { if case .event(let event) = self { event } else { nil } }
    var request: Request? { if case .request(let request) = self { request } else { nil } }
    var response: Response? { if case .response(let response) = self { response } else { nil } }

    /// `bytes` read as a packed `google.protobuf.Any` by protobuf-c; nil if they are not one.
    static func any(_ bytes: [UInt8]) -> (typeURL: String, value: [UInt8])? {
        guard let any = bytes.withUnsafeBufferPointer({ buffer in
            google__protobuf__any__unpack(nil, buffer.count, buffer.baseAddress ?? UnsafePointer(bitPattern: 1))
        }) else { return nil }
        defer { google__protobuf__any__free_unpacked(any, nil) }
        return (text(any.pointee.type_url), self.bytes(any.pointee.value))
    }

    private static func text(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        pointer.map { String(cString: $0) } ?? ""
    }

    private static func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
        guard let base = data.data, data.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: base, count: data.len))
    }

    private static func agent(_ id: UnsafeMutablePointer<Agents__AgentId>) -> AgentRef {
        AgentRef(type: text(id.pointee.type), key: text(id.pointee.key))
    }

    private static func payload(_ body: UnsafeMutablePointer<Agents__Payload>) -> Payload {
        Payload(dataType: text(body.pointee.data_type), contentType: text(body.pointee.data_content_type),
                data: bytes(body.pointee.data))
    }
}
