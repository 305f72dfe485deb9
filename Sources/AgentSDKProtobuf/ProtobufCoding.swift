@_spi(MessageFormats) import AgentSDK
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
enum ProtobufCoding {
    /// AutoGen's protobuf content type.
    static let protobuf = "application/x-protobuf"
    /// JSON, here protobuf's JSON mapping.
    static let json = "application/json"
    /// What a protobuf handler reads: binary first, then the JSON mapping.
    static let contentTypes = [protobuf, json]

    /// `message` in `contentType` (one of ``contentTypes``).
    static func encode<M: SwiftProtobuf.Message>(_ message: M, as contentType: String) throws -> EncodedMessage {
        let json = contentType == json
        do {
            let payload: Data
            if json {
                payload = try message.jsonUTF8Bytes()
            } else {
                payload = try message.serializedBytes()
            }
            return EncodedMessage(messageType: M.protoMessageName, contentType: contentType, payload: payload)
        } catch {
            throw AgentError(
                .invalidArgument, "cannot encode \(M.protoMessageName) as \(json ? "JSON" : "protobuf"): \(error)",
                cause: error)
        }
    }

    /// Decodes a payload in `contentType` (one of ``contentTypes``).
    ///
    /// - Throws: ``AgentError`` (``AgentError/Code/invalidArgument``) naming the message type,
    ///   the encoding and what is wrong.
    static func decode<M: SwiftProtobuf.Message>(_ type: M.Type, from payload: Data, as contentType: String) throws -> M {
        if contentType == json {
            do {
                return try M(jsonUTF8Bytes: payload)
            } catch {
                throw AgentError(
                    .invalidArgument,
                    "cannot decode \(M.protoMessageName) from its JSON payload (protobuf's JSON mapping): "
                        + "\(describe(error, of: M.self)) (payload: \(excerpt(payload)))",
                    cause: error)
            }
        }
        do {
            return try M(serializedBytes: payload)
        } catch {
            throw AgentError(
                .invalidArgument,
                "cannot decode \(M.protoMessageName) from its protobuf payload (\(payload.count) bytes): "
                    + describe(error, of: M.self),
                cause: error)
        }
    }

    /// swift-protobuf's decoding errors in words.
    private static func describe<M>(_ error: any Error, of type: M.Type) -> String {
        switch error {
        case BinaryDecodingError.truncated: "the bytes end inside a field"
        case BinaryDecodingError.malformedProtobuf: "the bytes are not a protobuf message"
        case BinaryDecodingError.invalidUTF8: "a string field is not valid UTF-8"
        case BinaryDecodingError.messageDepthLimit: "messages are nested too deeply"
        case JSONDecodingError.unknownField(let name): "unknown field \"\(name)\" (\(type) has no such field)"
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
