/// One delivery to a handler: where the message came from, and the agent's powers.
///
/// ```swift
/// registry.on(Greeting.self) { agent, greeting, context in
///     // Answer on the same source the greeting was published on.
///     let source = context.topic?.source ?? context.agentID.key
///     try context.publish(GreetingReply(text: "Hello, \(greeting.name)!"),
///                         to: TopicID(type: "greeting-replies", source: source))
/// }
/// ```
public struct MessageContext: Sendable {
    /// The receiving agent's context (also what ``publish(_:to:)``, ``send(_:to:expecting:)``,
    /// ``setting(_:)`` and ``logger`` use).
    public let agentContext: AgentContext
    /// The sending agent, or nil when the sender is not an agent.
    public let sender: AgentID?
    /// The topic an event was published to; nil for an RPC.
    public let topic: TopicID?
    /// The event's id, or the RPC's request id.
    public let messageID: String
    /// Whether the message is an RPC (its handler's result is the answer).
    public let isRPC: Bool
    /// W3C trace context of the span the runtime started for this handler, when the message
    /// carried one (nil otherwise, and with a runtime older than ABI 1.3). What the handler
    /// publishes and sends carries it on by itself; use it to record spans of your own.
    public var traceparent: String? = nil
    public var tracestate: String? = nil

    /// This agent's id.
    public var agentID: AgentID { agentContext.agentID }

    /// Writes to the runtime's log, tagged with the plugin and this agent.
    public var logger: AgentLogger { agentContext.logger }

    /// See ``AgentContext/publish(_:to:)``.
    public func publish<M: AgentMessage>(_ message: M, to topic: TopicID) throws {
        try agentContext.publish(message, to: topic)
    }

    /// See ``AgentContext/send(_:to:expecting:)``.
    public func send<M: AgentMessage, R: AgentMessage>(
        _ message: M, to target: AgentID, expecting: R.Type = R.self
    ) async throws -> R {
        try await agentContext.send(message, to: target, expecting: expecting)
    }

    /// See ``AgentContext/send(_:to:)``.
    public func send<M: AgentMessage>(_ message: M, to target: AgentID) async throws {
        try await agentContext.send(message, to: target)
    }

    /// See ``AgentContext/setting(_:)``.
    public func setting(_ key: String) -> String? {
        agentContext.setting(key)
    }

    /// See ``AgentContext/log(_:level:)``.
    public func log(_ message: String, level: AgentLogger.Level = .info) {
        agentContext.log(message, level: level)
    }

    /// Says that this message changed the agent's state, so that the runtime checkpoints it:
    /// once the handler has returned, and before an RPC's answer goes out, it takes the
    /// agent's ``StatefulAgent/snapshot()`` and writes it to its state store. (An event's
    /// write may be shared with the messages queued behind it: see ``StatefulAgent``.)
    ///
    /// Call it from the handler of a ``StatefulAgent`` whenever the message changed what
    /// `snapshot()` returns; calling it more than once for one message is the same as once.
    ///
    /// ```swift
    /// registry.onRPC(Add.self) { counter, add, context in
    ///     counter.count += add.amount
    ///     context.stateChanged()
    ///     return Count(count: counter.count)
    /// }
    /// registry.onRPC(Get.self) { counter, _, _ in
    ///     Count(count: counter.count)  // reads only: no checkpoint
    /// }
    /// ```
    ///
    /// Once an agent type has called it, the runtime trusts it: a message during which it was
    /// not called is not checkpointed, so a handler that changes the state must call it every
    /// time. A type that never calls it is snapshotted after every message, and the snapshot
    /// is written when it differs from the last one stored.
    ///
    /// Call it before the handler returns (the SDK answers the message after that), not from
    /// work the handler leaves running: the runtime counts the call towards the message being
    /// handled when it arrives. On a runtime older than plugin ABI 1.2 it does nothing; for
    /// an agent type that is not a ``StatefulAgent`` it does nothing either.
    public func stateChanged() {
        agentContext.stateChanged()
    }
}
