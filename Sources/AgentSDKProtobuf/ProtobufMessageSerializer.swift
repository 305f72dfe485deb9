@_spi(MessageSerializers) import AgentSDK
import Foundation
import SwiftProtobuf

/// How a swift-protobuf message travels, as AutoGen's Python runtime sends and reads it.
///
/// - Message type: the message's full name (`agentd.samples.Order`), what AutoGen's
///   `ProtobufMessageSerializer` uses as the data type.
/// - `application/x-protobuf`: the message's binary encoding. (AutoGen packs it in a
///   `google.protobuf.Any`; the runtime unpacks and packs that Any, so a plugin sees the
///   message's own bytes.)
/// - `application/json`: protobuf's JSON mapping (`google.protobuf.json_format`), which is how a
///   Python worker's `send_message` carries a protobuf class, since it sends every RPC as JSON.
///   Decoding is as strict as `json_format.Parse`: an unknown field is an error.
///
/// Publish and send write binary; an RPC's answer is written in the request's encoding.
struct ProtobufMessageSerializer<M: SwiftProtobuf.Message>: MessageSerializer {
    var messageType: String { M.protoMessageName }
    var contentTypes: [String] { [ContentType.protobuf, ContentType.json] }

    func serialize(_ message: M, as contentType: String) throws -> Data {
        let json = contentType == ContentType.json
        do {
            if json { return try message.jsonUTF8Bytes() }
            return try message.serializedBytes()
        } catch {
            throw AgentError(
                .invalidArgument, "cannot encode \(messageType) as \(json ? "JSON" : "protobuf"): \(error)", cause: error)
        }
    }

    func deserialize(_ payload: Data, as contentType: String) throws -> M {
        if contentType == ContentType.json {
            do {
                return try M(jsonUTF8Bytes: payload)
            } catch {
                throw AgentError(
                    .invalidArgument,
                    "cannot decode \(messageType) from its JSON payload (protobuf's JSON mapping): "
                        + "\(Self.describe(error)) (payload: \(Self.excerpt(payload)))",
                    cause: error)
            }
        }
        do {
            return try M(serializedBytes: payload)
        } catch {
            throw AgentError(
                .invalidArgument,
                "cannot decode \(messageType) from its protobuf payload (\(payload.count) bytes): \(Self.describe(error))",
                cause: error)
        }
    }

    /// swift-protobuf's decoding errors in words.
    private static func describe(_ error: any Error) -> String {
        switch error {
        case BinaryDecodingError.truncated: "the bytes end inside a field"
        case BinaryDecodingError.malformedProtobuf: "the bytes are not a protobuf message"
        case BinaryDecodingError.invalidUTF8: "a string field is not valid UTF-8"
        case BinaryDecodingError.messageDepthLimit: "messages are nested too deeply"
        case JSONDecodingError.unknownField(let name): "unknown field \"\(name)\" (\(M.self) has no such field)"
        case JSONDecodingError.truncated: "the JSON ends early"
        case JSONDecodingError.trailingGarbage: "there is more after the JSON value"
        case JSONDecodingError.schemaMismatch: "a value's JSON type does not match its field's type"
        case JSONDecodingError.numberRange: "a number is out of its field's range"
        case let error as JSONDecodingError: "malformed JSON (\(error))"
        default: "\(error)"
        }
    }

    /// The start of a JSON payload, for an error message.
    private static func excerpt(_ payload: Data, limit: Int = 80) -> String {
        if payload.isEmpty { return "empty" }
        let text = String(decoding: payload.prefix(limit), as: UTF8.self)
        return payload.count > limit ? "\(text)… (\(payload.count) bytes)" : text
    }
}
