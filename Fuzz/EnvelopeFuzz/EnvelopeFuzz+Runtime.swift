import ProtoWire
import CAgentWire
import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

extension EnvelopeFuzz {
    /// The routing fields as the runtime sees them after protobuf-c decoded a message: the
    /// bytes of each C string (up to its NUL).
    struct RuntimeView {
        enum Kind { case request, response, event }
        var kind: Kind
        /// Request and response: `request_id`; event: `id`.
        var id: [UInt8] = []
        var targetType: [UInt8] = []
        var targetKey: [UInt8] = []
        var topicType: [UInt8] = []
        var topicSource: [UInt8] = []
    }

    /// What `IncomingMessage.init` does with a message from the host: `agents__message__unpack`,
    /// a walk over everything a handler can be shown (under AddressSanitizer, every byte is
    /// read), then `agents__message__free_unpacked`. Where the host parsed the message too, both
    /// must see the same kind, id and route.
    static func checkRuntimePath(_ bytes: UnsafeRawBufferPointer, host: Envelope?) {
        // protobuf-c wants a non-null pointer even for an empty message, as IncomingMessage passes it.
        guard let base = bytes.baseAddress ?? UnsafeRawPointer(bitPattern: 1),
              let message = agents__message__unpack(nil, bytes.count, base.assumingMemoryBound(to: UInt8.self))
        else { return }
        defer { agents__message__free_unpacked(message, nil) }

        // Where IncomingMessage gives up on a message (a NULL body), so does the walk.
        let view: RuntimeView
        switch message.pointee.message_case {
        case AGENTS__MESSAGE__MESSAGE_CLOUD_EVENT:
            guard let event = message.pointee.cloudevent else { return }
            view = walk(event.pointee)
        case AGENTS__MESSAGE__MESSAGE_REQUEST:
            guard let request = message.pointee.request else { return }
            view = walk(request.pointee)
        case AGENTS__MESSAGE__MESSAGE_RESPONSE:
            guard let response = message.pointee.response else { return }
            view = walk(response.pointee)
        default:
            return
        }
        if let host { checkAgreement(host: host, runtime: view) }
    }

    static func walk(_ event: Io__Cloudevents__V1__CloudEvent) -> RuntimeView {
        var view = RuntimeView(kind: .event)
        view.id = cString(event.id)
        view.topicSource = cString(event.source)
        view.topicType = cString(event.type)
        touch(event.spec_version)
        if let attributes = event.attributes {
            for index in 0..<event.n_attributes {
                guard let entry = attributes[index] else { continue }
                touch(entry.pointee.key)
                guard let value = entry.pointee.value else { continue }
                switch value.pointee.attr_case {
                case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING:
                    touch(value.pointee.ce_string)
                case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI:
                    touch(value.pointee.ce_uri)
                case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF:
                    touch(value.pointee.ce_uri_ref)
                case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES:
                    touch(value.pointee.ce_bytes)
                case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP:
                    if let timestamp = value.pointee.ce_timestamp {
                        Sink.keep(Int(timestamp.pointee.seconds) &+ Int(timestamp.pointee.nanos))
                    }
                default:
                    Sink.keep(Int(value.pointee.ce_boolean) &+ Int(value.pointee.ce_integer))
                }
            }
        }
        switch event.data_case {
        case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA:
            touch(event.binary_data)
        case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
            if let any = event.proto_data {
                touch(any.pointee.type_url)
                touch(any.pointee.value)
            }
        case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA:
            touch(event.text_data)
        default:
            break
        }
        return view
    }

    static func walk(_ request: Agents__RpcRequest) -> RuntimeView {
        var view = RuntimeView(kind: .request)
        view.id = cString(request.request_id)
        if let source = request.source {
            touch(source.pointee.type)
            touch(source.pointee.key)
        }
        if let target = request.target {
            view.targetType = cString(target.pointee.type)
            view.targetKey = cString(target.pointee.key)
        }
        touch(request.method)
        if let payload = request.payload { walk(payload.pointee) }
        if let metadata = request.metadata {
            for index in 0..<request.n_metadata {
                guard let entry = metadata[index] else { continue }
                touch(entry.pointee.key)
                touch(entry.pointee.value)
            }
        }
        return view
    }

    static func walk(_ response: Agents__RpcResponse) -> RuntimeView {
        var view = RuntimeView(kind: .response)
        view.id = cString(response.request_id)
        touch(response.error)
        if let payload = response.payload { walk(payload.pointee) }
        if let metadata = response.metadata {
            for index in 0..<response.n_metadata {
                guard let entry = metadata[index] else { continue }
                touch(entry.pointee.key)
                touch(entry.pointee.value)
            }
        }
        return view
    }

    static func walk(_ payload: Agents__Payload) {
        touch(payload.data_type)
        touch(payload.data_content_type)
        touch(payload.data)
    }

    /// The host routes by its view, the runtime delivers by its own: they must agree, except
    /// that a C string ends at its first NUL while the host keeps the bytes after it.
    static func checkAgreement(host: Envelope, runtime: RuntimeView) {
        func agree(_ hostText: String, _ runtimeBytes: [UInt8], _ what: String) {
            let runtimeText = String(decoding: runtimeBytes, as: UTF8.self)
            let hostPrefix = Array(hostText.utf8.prefix { $0 != 0 })
            precondition(
                hostPrefix == Array(runtimeText.utf8),
                "\(what): the host reads \(hostText.debugDescription), the runtime \(runtimeText.debugDescription)")
        }
        switch (host, runtime.kind) {
        case (.request(let request), .request):
            agree(request.requestID, runtime.id, "request id")
            agree(request.targetType, runtime.targetType, "target agent type")
            agree(request.targetKey, runtime.targetKey, "target agent key")
        case (.response(let response), .response):
            agree(response.requestID, runtime.id, "response id")
        case (.event(let event), .event):
            agree(event.id, runtime.id, "CloudEvent id")
            agree(event.topicType, runtime.topicType, "topic type")
            agree(event.topicSource, runtime.topicSource, "topic source")
        default:
            preconditionFailure("the host reads \(host), the runtime a \(runtime.kind)")
        }
    }

    /// The bytes of a C string (empty for NULL); `strlen` is checked by AddressSanitizer.
    static func cString(_ string: UnsafeMutablePointer<CChar>?) -> [UInt8] {
        guard let string else { return [] }
        return Array(UnsafeRawBufferPointer(start: string, count: strlen(string)))
    }

    /// Reads a C string to its NUL (`strlen`, which AddressSanitizer checks).
    static func touch(_ string: UnsafeMutablePointer<CChar>?) {
        if let string { Sink.keep(strlen(string)) }
    }

    /// Reads every byte of a protobuf-c `bytes` field (what a plugin is handed as a payload:
    /// a length with a NULL pointer would crash it).
    static func touch(_ data: ProtobufCBinaryData) {
        guard data.len > 0 else { return }
        guard let bytes = data.data else { preconditionFailure("\(data.len) bytes at NULL") }
        Sink.keep(Int(UnsafeBufferPointer(start: bytes, count: data.len).reduce(0, &+)))
    }
}
