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
        add(rpc: false, for: M.messageType, MessageHandlers.Entry(contentTypes: MessageHandlers.json) {
            agent, payload, _, context in
            try await handler(unsafeDowncast(agent, to: A.self), try MessageCoding.decode(M.self, from: payload), context)
            return .finished
        })
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
        add(rpc: true, for: M.messageType, MessageHandlers.Entry(contentTypes: MessageHandlers.json) {
            agent, payload, _, context in
            let request = try MessageCoding.decode(M.self, from: payload)
            return .answer(try MessageCoding.encoded(try await handler(unsafeDowncast(agent, to: A.self), request, context)))
        })
    }

    /// Registers the handler of events of `messageType` as they arrive: the payload and its
    /// content type without parameters, one of `contentTypes` (a message in another is refused before
    /// the handler runs). SPI: what `AgentSDKProtobuf`'s overload registers.
    @_spi(MessageFormats)
    public mutating func on(
        messageType: String, contentTypes: [String],
        _ handler: @escaping @Sendable (A, Data, String, MessageContext) async throws -> Void
    ) {
        add(rpc: false, for: messageType, MessageHandlers.Entry(contentTypes: contentTypes) {
            agent, payload, contentType, context in
            try await handler(unsafeDowncast(agent, to: A.self), payload, contentType, context)
            return .finished
        })
    }

    /// Registers the handler of RPCs of `messageType` as they arrive (see
    /// ``on(messageType:contentTypes:_:)``); the message it returns is the answer. SPI: what
    /// `AgentSDKProtobuf`'s overload registers.
    @_spi(MessageFormats)
    public mutating func onRPC(
        messageType: String, contentTypes: [String],
        _ handler: @escaping @Sendable (A, Data, String, MessageContext) async throws -> EncodedMessage
    ) {
        add(rpc: true, for: messageType, MessageHandlers.Entry(contentTypes: contentTypes) {
            agent, payload, contentType, context in
            .answer(try await handler(unsafeDowncast(agent, to: A.self), payload, contentType, context))
        })
    }

    /// Puts the event or RPC handler of a message type in place, or notes a second one as a
    /// problem.
    private mutating func add(rpc: Bool, for name: String, _ entry: MessageHandlers.Entry) {
        var handlers = entries[name] ?? MessageHandlers()
        guard (rpc ? handlers.rpc : handlers.event) == nil else {
            problems.append("\(A.type): a second \(rpc ? "RPC" : "event") handler for \(name)")
            return
        }
        if rpc {
            handlers.rpc = entry
        } else {
            handlers.event = entry
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
        case answer(EncodedMessage)
    }

    /// What an ``AgentMessage``'s handler reads.
    static let json = [ContentType.json]

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
