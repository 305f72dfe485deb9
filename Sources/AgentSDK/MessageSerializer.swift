#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// How one Swift type travels as a message: its message type name on the wire and the content
/// types it is written and read in (AutoGen's `MessageSerializer`).
///
/// The SDK's handlers, `publish` and `send` are written once against this protocol: an
/// ``AgentMessage`` goes through the SDK's JSON serializer, and `AgentSDKProtobuf` brings one
/// for swift-protobuf messages, so that a plugin that uses only JSON links nothing else. (SPI
/// for the SDK's own message formats, not a promise to plugin authors.)
@_spi(MessageSerializers)
public protocol MessageSerializer<Message>: Sendable {
    associatedtype Message: Sendable

    /// The message type name on the wire: the payload's `data_type` / `dataschema`.
    var messageType: String { get }

    /// The content types the serializer writes and reads, without parameters, preferred first.
    /// `publish` and `send` write the first; an RPC's answer is written in the request's
    /// content type when it is listed, else in the first.
    var contentTypes: [String] { get }

    /// Encodes a message in one of ``contentTypes``.
    ///
    /// - Throws: ``AgentError`` naming the message type and what could not be encoded.
    func serialize(_ message: Message, as contentType: String) throws -> Data

    /// Decodes a payload that arrived in one of ``contentTypes``.
    ///
    /// - Throws: ``AgentError`` (``AgentError/Code/invalidArgument``) naming the message type,
    ///   the content type and what is wrong with the payload.
    func deserialize(_ payload: Data, as contentType: String) throws -> Message
}

/// The SDK's own content types, and how it compares them.
@_spi(MessageSerializers)
public enum ContentType {
    /// `application/json`: every ``AgentMessage``, and what AutoGen's `send_message` always sends.
    public static let json = "application/json"
    /// `application/x-protobuf`: AutoGen's protobuf payloads.
    public static let protobuf = "application/x-protobuf"

    /// A content type as serializers list it: without parameters or surrounding spaces; an
    /// empty one (a sender that did not say) is JSON, as the runtime has always taken it.
    public static func canonical(_ contentType: String) -> String {
        var bare = contentType.prefix { $0 != ";" }
        while let first = bare.first, first == " " || first == "\t" { bare.removeFirst() }
        while let last = bare.last, last == " " || last == "\t" { bare.removeLast() }
        return bare.isEmpty ? json : String(bare)
    }
}

extension MessageSerializer {
    /// The content type to answer a request that arrived in `requestContentType` with.
    func answerContentType(for requestContentType: String) -> String {
        contentTypes.contains(requestContentType) ? requestContentType : contentTypes[0]
    }

    /// "application/json" or "application/x-protobuf or application/json", for error messages.
    var contentTypeList: String {
        contentTypes.joined(separator: " or ")
    }
}

/// The serializer of every ``AgentMessage``: JSON, AutoGen-style (see ``AgentMessage``).
struct JSONMessageSerializer<M: AgentMessage>: MessageSerializer {
    var messageType: String { M.messageType }
    var contentTypes: [String] { [ContentType.json] }

    func serialize(_ message: M, as contentType: String) throws -> Data {
        try MessageCoding.encode(message)
    }

    func deserialize(_ payload: Data, as contentType: String) throws -> M {
        try MessageCoding.decode(M.self, from: payload)
    }
}
