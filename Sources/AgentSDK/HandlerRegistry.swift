#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The message handlers of one agent type, filled in ``Agent/handlers(_:)``.
///
/// Each handler receives the agent instance, the decoded message and the
/// ``MessageContext`` of the delivery. Handlers are `async`: they may `await`
/// ``MessageContext/send(_:to:expecting:)`` or any other work, and the instance receives its next
/// message only after the handler has returned.
///
/// ```swift
/// static func handlers(_ registry: inout HandlerRegistry<Greeter>) {
///     registry.on(Greeting.self) { agent, greeting, context in
///         try context.publish(GreetingReply(text: "Hi, \(greeting.name)!"),
///                             to: TopicID(type: "greeting-replies", source: context.agentID.key))
///     }
///     registry.onRPC(Echo.self) { agent, echo, context -> Echo in
///         echo
///     }
/// }
/// ```
///
/// A message type may have an event handler and an RPC handler: an event goes to the first, an
/// RPC to the second. An RPC of a type with only an event handler (or the reverse) is refused
/// as ``AgentError/Code/unknownMessageType``, as AutoGen's `@event` / `@rpc` routing does.
public struct HandlerRegistry<A: Agent> {
    var entries: [String: MessageHandlers] = [:]
    /// Mistakes found while registering (a handler registered twice), reported at export.
    var problems: [String] = []

    init() {}

    /// Registers the handler of events (published messages) of type `M`.
    ///
    /// - Parameters:
    ///   - type: The message type; its ``AgentMessage/messageType`` is the name on the wire.
    ///   - handler: Called with the instance, the decoded event and its context. Throwing logs
    ///     the error (an event has nobody to answer).
    public mutating func on<M: AgentMessage>(
        _ type: M.Type,
        _ handler: @escaping @Sendable (A, M, MessageContext) async throws -> Void
    ) {
        let name = M.messageType
        var handlers = entries[name] ?? MessageHandlers()
        guard handlers.event == nil else {
            problems.append("\(A.type): a second event handler for \(name)")
            return
        }
        handlers.event = { agent, payload, context in
            let message = try MessageCoding.decode(M.self, from: payload)
            try await handler(unsafeDowncast(agent, to: A.self), message, context)
            return .finished
        }
        entries[name] = handlers
    }

    /// Registers the handler of RPCs carrying `M`; what it returns is the answer.
    ///
    /// - Parameters:
    ///   - type: The request's message type.
    ///   - handler: Called with the instance, the decoded request and its context; returns the
    ///     answer. Throwing answers the caller with an error: the ``AgentError/message`` of an
    ///     ``AgentError``, or the description of any other error.
    public mutating func onRPC<M: AgentMessage, R: AgentMessage>(
        _ type: M.Type,
        _ handler: @escaping @Sendable (A, M, MessageContext) async throws -> R
    ) {
        let name = M.messageType
        var handlers = entries[name] ?? MessageHandlers()
        guard handlers.rpc == nil else {
            problems.append("\(A.type): a second RPC handler for \(name)")
            return
        }
        handlers.rpc = { agent, payload, context in
            let request = try MessageCoding.decode(M.self, from: payload)
            let answer = try await handler(unsafeDowncast(agent, to: A.self), request, context)
            return .answer(messageType: R.messageType, payload: try MessageCoding.encode(answer))
        }
        entries[name] = handlers
    }
}

/// The type-erased handlers of one message type: decode, call, encode.
struct MessageHandlers: Sendable {
    /// What a handler produced.
    enum Outcome: Sendable {
        /// An event was handled.
        case finished
        /// An RPC's answer, encoded.
        case answer(messageType: String, payload: Data)
    }

    typealias Handler = @Sendable (AnyObject, Data, MessageContext) async throws -> Outcome

    var event: Handler?
    var rpc: Handler?
}
