/// What routing needs from one `agents.Message` on the data channel, read without decoding
/// the rest (payloads and attributes are never touched).
///
/// Field numbers (see `Protos/agent_worker.proto`): `Message{request = 1, response = 2,
/// cloudEvent = 3}`; `RpcRequest{request_id = 1, target = 3}`; `RpcResponse{request_id = 1}`;
/// `AgentId{type = 1, key = 2}`; `CloudEvent{id = 1, source = 2, type = 4}`.
public enum Envelope: Sendable {
    case request(RpcRequestHeader)
    case response(RpcResponseHeader)
    case event(CloudEventHeader)

    /// Reads the routing fields of a serialized `agents.Message`.
    /// - Throws: ``WireError`` naming what is malformed, or a message with no known content.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws -> Envelope {
        var reader = ProtoReader(bytes)
        var body: (number: Int, range: Range<Int>)?
        while let field = try reader.next() {
            switch field.number {
            case 1, 2, 3: body = (field.number, try field.bytesRange())
            default: continue
            }
        }
        guard let body else {
            throw WireError("the message carries no request, response or CloudEvent", at: 0)
        }
        switch body.number {
        case 1: return .request(try RpcRequestHeader(bytes, body.range))
        case 2: return .response(try RpcResponseHeader(bytes, body.range))
        default: return .event(try CloudEventHeader(bytes, body.range))
        }
    }

    /// A serialized `agents.Message` carrying an `RpcResponse` with only `request_id` and
    /// `error` set: how a caller learns that its request failed.
    public static func errorResponse(requestID: String, error: String) -> [UInt8] {
        var message = ProtoWriter(capacity: 32 + requestID.utf8.count + error.utf8.count)
        message.messageField(2) { response in
            response.stringField(1, requestID)
            response.stringField(3, error.isEmpty ? "error" : error)
        }
        return message.bytes
    }

    /// A copy of `bytes` (an `agents.Message` whose field `messageField` is an `RpcRequest` or
    /// `RpcResponse` at `body`) with that body's `request_id` replaced by `requestID`; every
    /// other field is copied byte for byte.
    public static func replacingRequestID(
        in bytes: UnsafeRawBufferPointer, messageField: Int, body: Range<Int>, with requestID: String
    ) throws -> [UInt8] {
        var inner = ProtoWriter(capacity: body.count + requestID.utf8.count + 4)
        inner.stringField(1, requestID)
        var reader = ProtoReader(bytes, range: body)
        while let field = try reader.next() {
            if field.number != 1 { inner.raw(UnsafeRawBufferPointer(rebasing: bytes[field.range])) }
        }
        var message = ProtoWriter(capacity: inner.bytes.count + 8)
        inner.bytes.withUnsafeBytes { message.bytesField(messageField, $0) }
        return message.bytes
    }
}

/// The routing fields of an `RpcRequest`.
public struct RpcRequestHeader: Sendable {
    public var requestID: String
    public var targetType: String
    public var targetKey: String
    /// Where the `RpcRequest` lies within the message.
    public var body: Range<Int>

    init(_ bytes: UnsafeRawBufferPointer, _ body: Range<Int>) throws {
        self.body = body
        requestID = ""
        targetType = ""
        targetKey = ""
        var reader = ProtoReader(bytes, range: body)
        while let field = try reader.next() {
            switch field.number {
            case 1: requestID = reader.string(try field.bytesRange())
            case 3:
                var target = ProtoReader(bytes, range: try field.bytesRange())
                while let part = try target.next() {
                    switch part.number {
                    case 1: targetType = target.string(try part.bytesRange())
                    case 2: targetKey = target.string(try part.bytesRange())
                    default: continue
                    }
                }
            default: continue
            }
        }
    }
}

/// The routing fields of an `RpcResponse`.
public struct RpcResponseHeader: Sendable {
    public var requestID: String
    public var body: Range<Int>

    init(_ bytes: UnsafeRawBufferPointer, _ body: Range<Int>) throws {
        self.body = body
        requestID = ""
        var reader = ProtoReader(bytes, range: body)
        while let field = try reader.next() {
            if field.number == 1 { requestID = reader.string(try field.bytesRange()) }
        }
    }
}

/// The routing fields of a CloudEvent: its topic.
public struct CloudEventHeader: Sendable {
    public var id: String
    /// The topic's type (CloudEvent `type`).
    public var topicType: String
    /// The topic's source (CloudEvent `source`).
    public var topicSource: String

    init(_ bytes: UnsafeRawBufferPointer, _ body: Range<Int>) throws {
        id = ""
        topicType = ""
        topicSource = ""
        var reader = ProtoReader(bytes, range: body)
        while let field = try reader.next() {
            switch field.number {
            case 1: id = reader.string(try field.bytesRange())
            case 2: topicSource = reader.string(try field.bytesRange())
            case 4: topicType = reader.string(try field.bytesRange())
            default: continue
            }
        }
    }
}
