import AgentCore
import AgentPluginABI
import ProtoWire
import Foundation
import Synchronization

/// Encodes what the runtime sends to the host, in AutoGen's shapes (see protocol.md). (SPI for
/// the benchmarks, which send the runtime's own bytes.)
@_spi(Benchmarks) public enum OutboundCodec {
    static let protobufContentType = "application/x-protobuf"

    /// `Message{cloudEvent}`: a publish. JSON (and anything not protobuf) goes in
    /// `binary_data`; protobuf in `proto_data` as an Any of `type.googleapis.com/<type>`.
    public static func event(
        id: String, topicType: String, topicSource: String, senderType: String?, senderKey: String?,
        messageType: String, contentType: String, payload: UnsafeRawBufferPointer, trace: TraceContext? = nil
    ) -> [UInt8] {
        var message = ProtoWriter(capacity: payload.count + 256)
        message.messageField(3) { event in
            event.stringField(1, id)
            event.stringField(2, topicSource)
            event.stringField(3, "1.0")
            event.stringField(4, topicType)
            func attribute(_ key: String, _ value: String) {
                event.messageField(5) { entry in
                    entry.stringField(1, key)
                    entry.messageField(2) { $0.stringField(3, value) }
                }
            }
            attribute("datacontenttype", contentType)
            attribute("dataschema", messageType)
            attribute("agagentsendertype", senderType ?? "unknown")
            attribute("agagentsenderkey", senderKey ?? "unknown")
            attribute("agmsgkind", "publish")
            if let trace {
                attribute("traceparent", trace.traceparent)
                if !trace.state.isEmpty { attribute("tracestate", trace.state) }
            }
            if contentType == protobufContentType {
                event.messageField(8) { any in
                    any.stringField(1, "type.googleapis.com/\(messageType)")
                    any.bytesField(2, payload)
                }
            } else {
                event.bytesField(6, payload)
            }
        }
        return message.bytes
    }

    /// `Message{request}`.
    public static func request(
        id: String, senderType: String?, senderKey: String?, targetType: String, targetKey: String,
        messageType: String, contentType: String, payload: UnsafeRawBufferPointer, trace: TraceContext? = nil
    ) -> [UInt8] {
        var message = ProtoWriter(capacity: payload.count + 128)
        message.messageField(1) { request in
            request.stringField(1, id)
            if let senderType {
                request.messageField(2) { $0.stringField(1, senderType); $0.stringField(2, senderKey ?? "") }
            }
            request.messageField(3) { $0.stringField(1, targetType); $0.stringField(2, targetKey) }
            request.stringField(4, messageType)
            request.messageField(5) { body in
                body.stringField(1, messageType)
                body.stringField(2, contentType)
                payloadField(&body, messageType: messageType, contentType: contentType, payload: payload)
            }
            if let trace {
                // `metadata` (map<string, string>, field 6), as AutoGen writes the trace context.
                request.messageField(6) { $0.stringField(1, "traceparent"); $0.stringField(2, trace.traceparent) }
                if !trace.state.isEmpty {
                    request.messageField(6) { $0.stringField(1, "tracestate"); $0.stringField(2, trace.state) }
                }
            }
        }
        return message.bytes
    }

    /// `Message{response}` with a payload.
    static func response(requestID: String, messageType: String, contentType: String,
                         payload: UnsafeRawBufferPointer) -> [UInt8] {
        var message = ProtoWriter(capacity: payload.count + 64)
        message.messageField(2) { response in
            response.stringField(1, requestID)
            response.messageField(2) { body in
                body.stringField(1, messageType)
                body.stringField(2, contentType)
                payloadField(&body, messageType: messageType, contentType: contentType, payload: payload)
            }
        }
        return message.bytes
    }

    /// `Payload.data`: the bytes as they are, or — for protobuf — packed in a
    /// `google.protobuf.Any`, as AutoGen's runtimes send and expect an RPC's protobuf payload.
    private static func payloadField(_ body: inout ProtoWriter, messageType: String, contentType: String,
                                     payload: UnsafeRawBufferPointer) {
        guard contentType == protobufContentType else {
            body.bytesField(3, payload)
            return
        }
        body.messageField(3) { any in
            any.stringField(1, "type.googleapis.com/\(messageType)")
            any.bytesField(2, payload)
        }
    }

    /// `Message{response}` with an error.
    static func errorResponse(requestID: String, error: String) -> [UInt8] {
        Envelope.errorResponse(requestID: requestID, error: error)
    }

    /// A new message id in UUID form (as AutoGen's Python runtime makes): a random prefix
    /// drawn once per process and a counter (``Delivery/eventID(prefix:sequence:)``: a receiver
    /// recognises an event sent again after a reconnect). Foundation's `UUID()` reads
    /// /dev/urandom on every call on Linux — three system calls per published message.
    static func newID() -> String {
        Delivery.eventID(prefix: idPrefix, sequence: idCounter.wrappingAdd(1, ordering: .relaxed).newValue)
    }

    private static let idCounter = Atomic<UInt64>(0)
    private static let idPrefix: String = Delivery.newEventIDPrefix()
}
