import AgentSDK
import SwiftProtobuf

extension MessageContext {
    /// See `AgentContext.publish(_:to:)` for protobuf messages.
    public func publish<M: SwiftProtobuf.Message>(_ message: M, to topic: TopicID) throws {
        try agentContext.publish(message, to: topic)
    }

    /// See `AgentContext.send(_:to:expecting:)` for protobuf messages.
    public func send<M: SwiftProtobuf.Message, R: SwiftProtobuf.Message>(
        _ message: M, to target: AgentID, expecting: R.Type = R.self
    ) async throws -> R {
        try await agentContext.send(message, to: target, expecting: expecting)
    }

    /// See `AgentContext.send(_:to:)` for protobuf messages.
    public func send<M: SwiftProtobuf.Message>(_ message: M, to target: AgentID) async throws {
        try await agentContext.send(message, to: target)
    }
}
