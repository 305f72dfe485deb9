@_spi(MessageFormats) import AgentSDK
import SwiftProtobuf

extension AgentContext {
    /// Publishes a protobuf message to a topic, as this agent: `application/x-protobuf`, with
    /// the message's full name as its type, which AutoGen's Python agents read with the
    /// class's protobuf serializer (`try_get_known_serializers_for_type`).
    ///
    /// - Throws: ``AgentError`` as ``AgentContext/publish(_:to:)`` does.
    public func publish<M: SwiftProtobuf.Message>(_ message: M, to topic: TopicID) throws {
        try publish(ProtobufCoding.encode(message, as: ProtobufCoding.protobuf), to: topic)
    }

    /// Sends an RPC carrying a protobuf message, as this agent, and returns its protobuf answer.
    ///
    /// The request goes as `application/x-protobuf`; the answer is read from protobuf or from
    /// protobuf's JSON mapping (what an AutoGen Python agent answers with).
    ///
    /// - Throws: ``AgentError`` as ``AgentContext/send(_:to:expecting:)`` does.
    public func send<M: SwiftProtobuf.Message, R: SwiftProtobuf.Message>(
        _ message: M, to target: AgentID, expecting: R.Type = R.self
    ) async throws -> R {
        let answer = try await send(
            ProtobufCoding.encode(message, as: ProtobufCoding.protobuf), to: target, expecting: R.protoMessageName,
            readableAs: ProtobufCoding.contentTypes)
        return try ProtobufCoding.decode(R.self, from: answer.payload, as: answer.contentType)
    }

    /// Sends an RPC carrying a protobuf message, as this agent, and waits for it to be handled;
    /// any answer is ignored.
    ///
    /// - Throws: ``AgentError`` when the answer is an error.
    public func send<M: SwiftProtobuf.Message>(_ message: M, to target: AgentID) async throws {
        try await send(ProtobufCoding.encode(message, as: ProtobufCoding.protobuf), to: target)
    }
}
