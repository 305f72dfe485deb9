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
        on(JSONMessageSerializer<M>(), handler)
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
        onRPC(JSONMessageSerializer<M>(), answer: JSONMessageSerializer<R>(), handler)
    }

    /// Registers the handler of events whose messages `serializer` reads (SPI: what ``on(_:_:)``
    /// and `AgentSDKProtobuf`'s overloads register).
    @_spi(MessageSerializers)
    public mutating func on<S: MessageSerializer>(
        _ serializer: S,
        _ handler: @escaping @Sendable (A, S.Message, MessageContext) async throws -> Void
    ) {
        let name = serializer.messageType
        var handlers = entries[name] ?? MessageHandlers()
        guard handlers.event == nil else {
            problems.append("\(A.type): a second event handler for \(name)")
            return
        }
        handlers.event = MessageHandlers.Entry(contentTypes: serializer.contentTypes) { agent, payload, contentType, context in
            let message = try serializer.deserialize(payload, as: contentType)
            try await handler(unsafeDowncast(agent, to: A.self), message, context)
            return .finished
        }
        entries[name] = handlers
    }

    /// Registers the handler of RPCs whose requests `request` reads; `answer` writes what the
    /// handler returns, in the request's content type when it can (SPI: what ``onRPC(_:_:)``
    /// and `AgentSDKProtobuf`'s overloads register).
    @_spi(MessageSerializers)
    public mutating func onRPC<S: MessageSerializer, T: MessageSerializer>(
        _ request: S, answer: T,
        _ handler: @escaping @Sendable (A, S.Message, MessageContext) async throws -> T.Message
    ) {
        let name = request.messageType
        var handlers = entries[name] ?? MessageHandlers()
        guard handlers.rpc == nil else {
            problems.append("\(A.type): a second RPC handler for \(name)")
            return
        }
        handlers.rpc = MessageHandlers.Entry(contentTypes: request.contentTypes) { agent, payload, contentType, context in
            let message = try request.deserialize(payload, as: contentType)
            let result = try await handler(unsafeDowncast(agent, to: A.self), message, context)
            let answerType = answer.answerContentType(for: contentType)
            return .answer(
                messageType: answer.messageType, contentType: answerType,
                payload: try answer.serialize(result, as: answerType))
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
        case answer(messageType: String, contentType: String, payload: Data)
    }

    /// One handler: the content types its message is read from, and the call.
    struct Entry: Sendable {
        /// Canonical content types (``ContentType/canonical(_:)``); a message in another is
        /// refused before a task starts.
        let contentTypes: [String]
        /// Called with the instance, the payload and its canonical content type.
        let run: @Sendable (AnyObject, Data, String, MessageContext) async throws -> Outcome
    }

    var event: Entry?
    var rpc: Entry?
}
