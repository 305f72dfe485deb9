import AgentPluginABI
import ProtoWire
import CAgentWire
import GRPCTransport
#if canImport(Glibc)
import Glibc
#endif

/// One `agents.Message` from the host, decoded once with protobuf-c. The plugin views
/// (`agentd_str` / `agentd_bytes`) point into the decoded message, which lives as long as
/// this object: every delivery of the message (an event may go to several local agents)
/// holds it.
final class IncomingMessage: @unchecked Sendable {
    // @unchecked Sendable: the decoded C message is immutable after init and freed only in
    // deinit; the views are plain pointers into it.
    enum Kind {
        case event
        case request
        case response
    }

    let kind: Kind
    private let message: UnsafeMutablePointer<Agents__Message>

    // Views for handlers (all kinds fill what applies; others are empty).
    let senderType: agentd_str
    let senderKey: agentd_str
    let topicType: agentd_str
    let topicSource: agentd_str
    let messageID: agentd_str
    let messageType: agentd_str
    let contentType: agentd_str
    let payload: agentd_bytes
    /// Requests: the target agent. Responses: the error text (empty when none).
    let targetType: agentd_str
    let targetKey: agentd_str
    let error: agentd_str
    /// W3C trace context: an event's `traceparent`/`tracestate` attributes, a request's
    /// metadata entries of those names (empty when absent).
    let traceparent: agentd_str
    let tracestate: agentd_str

    /// Decodes `bytes`; nil if they are not a valid `agents.Message` with a known body.
    init?(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress ?? (bytes.count == 0 ? UnsafeRawPointer(bitPattern: 1) : nil),
              let decoded = agents__message__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self))
        else { return nil }
        message = decoded
        let empty = agentd_str(data: nil, length: 0)
        var senderType = empty, senderKey = empty, topicType = empty, topicSource = empty
        var messageID = empty, messageType = empty, contentType = empty
        var payload = agentd_bytes(data: nil, length: 0)
        var targetType = empty, targetKey = empty, error = empty
        var traceparent = empty, tracestate = empty
        switch decoded.pointee.message_case {
        case AGENTS__MESSAGE__MESSAGE_CLOUD_EVENT:
            guard let event = decoded.pointee.cloudevent else {
                agents__message__free_unpacked(decoded, nil)
                return nil
            }
            kind = .event
            topicType = view(event.pointee.type)
            topicSource = view(event.pointee.source)
            messageID = view(event.pointee.id)
            if let attributes = event.pointee.attributes {
                for index in 0..<event.pointee.n_attributes {
                    guard let entry = attributes[index], let key = entry.pointee.key, let value = entry.pointee.value,
                          value.pointee.attr_case == IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING
                    else { continue }
                    let text = view(value.pointee.ce_string)
                    if strcmp(key, "datacontenttype") == 0 {
                        contentType = text
                    } else if strcmp(key, "dataschema") == 0 {
                        messageType = text
                    } else if strcmp(key, "agagentsendertype") == 0 {
                        senderType = text
                    } else if strcmp(key, "agagentsenderkey") == 0 {
                        senderKey = text
                    } else if strcmp(key, "traceparent") == 0 {
                        traceparent = text
                    } else if strcmp(key, "tracestate") == 0 {
                        tracestate = text
                    }
                }
            }
            switch event.pointee.data_case {
            case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA:
                payload = agentd_bytes(data: event.pointee.binary_data.data, length: event.pointee.binary_data.len)
            case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
                if let any = event.pointee.proto_data {
                    payload = agentd_bytes(data: any.pointee.value.data, length: any.pointee.value.len)
                }
            case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA:
                let text = view(event.pointee.text_data)
                payload = agentd_bytes(data: UnsafeRawPointer(text.data)?.assumingMemoryBound(to: UInt8.self), length: text.length)
            default:
                break
            }
            // AutoGen's Python worker sends "unknown"/"unknown" when there is no sender.
            if equals(senderType, "unknown") && equals(senderKey, "unknown") {
                senderType = empty
                senderKey = empty
            }
        case AGENTS__MESSAGE__MESSAGE_REQUEST:
            guard let request = decoded.pointee.request else {
                agents__message__free_unpacked(decoded, nil)
                return nil
            }
            kind = .request
            messageID = view(request.pointee.request_id)
            if let source = request.pointee.source {
                senderType = view(source.pointee.type)
                senderKey = view(source.pointee.key)
            }
            if let target = request.pointee.target {
                targetType = view(target.pointee.type)
                targetKey = view(target.pointee.key)
            }
            if let body = request.pointee.payload {
                messageType = view(body.pointee.data_type)
                contentType = view(body.pointee.data_content_type)
                payload = unwrappingAny(agentd_bytes(data: body.pointee.data.data, length: body.pointee.data.len), contentType)
            }
            if let metadata = request.pointee.metadata {
                for index in 0..<request.pointee.n_metadata {
                    guard let entry = metadata[index], let key = entry.pointee.key else { continue }
                    if strcmp(key, "traceparent") == 0 {
                        traceparent = view(entry.pointee.value)
                    } else if strcmp(key, "tracestate") == 0 {
                        tracestate = view(entry.pointee.value)
                    }
                }
            }
        case AGENTS__MESSAGE__MESSAGE_RESPONSE:
            guard let response = decoded.pointee.response else {
                agents__message__free_unpacked(decoded, nil)
                return nil
            }
            kind = .response
            messageID = view(response.pointee.request_id)
            error = view(response.pointee.error)
            if let body = response.pointee.payload {
                messageType = view(body.pointee.data_type)
                contentType = view(body.pointee.data_content_type)
                payload = unwrappingAny(agentd_bytes(data: body.pointee.data.data, length: body.pointee.data.len), contentType)
            }
        default:
            agents__message__free_unpacked(decoded, nil)
            return nil
        }
        self.senderType = senderType
        self.senderKey = senderKey
        self.topicType = topicType
        self.topicSource = topicSource
        self.messageID = messageID
        self.messageType = messageType
        self.contentType = contentType
        self.payload = payload
        self.traceparent = traceparent
        self.tracestate = tracestate
        self.targetType = targetType
        self.targetKey = targetKey
        self.error = error
    }

    deinit { agents__message__free_unpacked(message, nil) }
}

/// AutoGen carries a protobuf RPC payload as a packed `google.protobuf.Any` (as events carry
/// it in `proto_data`); plugins see the message's own bytes, its `value` field. Anything else
/// passes unchanged, and so does a protobuf payload that is not an Any: one is taken for an Any
/// only if its fields are `type_url = 1` and `value = 2`, both length-delimited, and the type
/// URL contains a `/`, as the Any's definition requires (`{int32 n = 1}` or
/// `{string name = 1; string text = 2}` sent unwrapped reach the plugin as they are).
func unwrappingAny(_ payload: agentd_bytes, _ contentType: agentd_str) -> agentd_bytes {
    guard equals(contentType, "application/x-protobuf"), let data = payload.data, payload.length > 0 else { return payload }
    let bytes = UnsafeRawBufferPointer(start: data, count: payload.length)
    var reader = ProtoReader(bytes)
    var value: Range<Int>?
    var typeURL: Range<Int>?
    do {
        while let field = try reader.next() {
            switch field.number {
            case 1: typeURL = try field.bytesRange()
            case 2: value = try field.bytesRange()
            default: return payload
            }
        }
    } catch {
        return payload
    }
    guard let typeURL, bytes[typeURL].contains(UInt8(ascii: "/")) else { return payload }
    guard let value else { return agentd_bytes(data: data, length: 0) }
    return agentd_bytes(data: data + value.lowerBound, length: value.count)
}

/// A borrowed view of a NUL-terminated C string (empty for NULL).
@inline(__always)
func view(_ string: UnsafeMutablePointer<CChar>?) -> agentd_str {
    guard let string else { return agentd_str(data: nil, length: 0) }
    return agentd_str(data: UnsafePointer(string), length: strlen(string))
}

@inline(__always)
func equals(_ view: agentd_str, _ text: StaticString) -> Bool {
    guard view.length == text.utf8CodeUnitCount else { return false }
    guard view.length > 0, let data = view.data else { return true }
    return memcmp(data, text.utf8Start, view.length) == 0
}

extension agentd_str {
    /// A Swift copy of the view.
    var string: String {
        guard let data, length > 0 else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }

    var isEmpty: Bool { length == 0 }
}

extension agentd_bytes {
    var buffer: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : length) }
}
