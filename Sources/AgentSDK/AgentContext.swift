import AgentPluginABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What an agent instance can do in the runtime: publish, send RPCs, read its plugin's
/// settings, log. Given to ``Agent/init(context:)``; handlers get it inside their
/// ``MessageContext``.
///
/// A context may be kept and used from any task while the instance lives (until the runtime
/// destroys it, at unload or when it retires the agent).
public struct AgentContext: Sendable {
    /// This agent's id.
    public let agentID: AgentID
    /// Writes to the runtime's log, tagged with the plugin and this agent.
    public let logger: AgentLogger

    let host: HostFunctions
    let agent: AgentReference

    init(agentID: AgentID, host: HostFunctions, agent: AgentReference) {
        self.agentID = agentID
        self.host = host
        self.agent = agent
        self.logger = AgentLogger(host: host, agent: agent)
    }

    /// A setting of the plugin's section of the runtime's INI file, or nil when absent.
    ///
    /// ```ini
    /// [plugin.greeter-plugin]
    /// greeting = Bonjour
    /// ```
    ///
    /// `context.setting("greeting")` is then `"Bonjour"`.
    public func setting(_ key: String) -> String? {
        host.setting(key)
    }

    /// Publishes an event to a topic, as this agent.
    ///
    /// The agents subscribed to the topic's type receive it (this agent excepted), on this
    /// worker or any other connected to the host — AutoGen's Python agents included.
    ///
    /// ```swift
    /// try context.publish(GreetingReply(text: "Hello!"), to: TopicID(type: "greeting-replies", source: "default"))
    /// ```
    ///
    /// - Throws: ``AgentError``: the message cannot be encoded, the topic type is not valid
    ///   (``AgentError/Code/invalidArgument``), or the runtime cannot publish now
    ///   (``AgentError/Code/unavailable``).
    public func publish<M: AgentMessage>(_ message: M, to topic: TopicID) throws {
        try publish(MessageCoding.encoded(message), to: topic)
    }

    /// Publishes an encoded event (SPI: what ``publish(_:to:)`` and `AgentSDKProtobuf`'s
    /// overload call).
    @_spi(MessageFormats)
    public func publish(_ message: EncodedMessage, to topic: TopicID) throws {
        let status = host.publish(
            from: agent, to: topic, messageType: message.messageType, contentType: message.contentType,
            payload: message.payload)
        guard status == AGENTD_OK else {
            let code = AgentError.Code(status)
            throw AgentError(code, "publishing \(message.messageType) to \(topic) failed: \(code)")
        }
    }

    /// Sends an RPC to an agent, as this agent, and returns its answer.
    ///
    /// ```swift
    /// let reply = try await context.send(Greeting(name: "Ada"), to: AgentID(type: "greeter", key: "default"),
    ///                                    expecting: GreetingReply.self)
    /// ```
    ///
    /// Waiting for the answer suspends the handler, not a thread. The runtime fails the call
    /// when no answer comes within its RPC timeout. An agent that sends to itself from a
    /// handler gets that timeout: it handles one message at a time, so the request waits
    /// behind the handler that awaits it.
    ///
    /// - Parameters:
    ///   - message: The request.
    ///   - target: The agent to ask; the runtime creates it on demand wherever its type lives.
    ///   - expecting: The answer's type.
    /// - Throws: ``AgentError``: the answer is an error (its ``AgentError/message`` is the
    ///   target's error text and its code the runtime's status: ``AgentError/Code/timeout``,
    ///   ``AgentError/Code/unavailable``, …), or it is not an `R` (``AgentError/Code/invalidArgument``).
    public func send<M: AgentMessage, R: AgentMessage>(
        _ message: M, to target: AgentID, expecting: R.Type = R.self
    ) async throws -> R {
        let answer = try await send(
            MessageCoding.encoded(message), to: target, expecting: R.messageType, readableAs: [ContentType.json])
        return try MessageCoding.decode(R.self, from: answer.payload)
    }

    /// Sends an RPC to an agent, as this agent, and waits for it to be handled; any answer is
    /// ignored.
    ///
    /// - Throws: ``AgentError`` when the answer is an error.
    public func send<M: AgentMessage>(_ message: M, to target: AgentID) async throws {
        try await send(MessageCoding.encoded(message), to: target)
    }

    /// Sends an encoded RPC and returns the answer once it is known to be a `messageType` in one
    /// of `contentTypes` (its content type without parameters). SPI: what ``send(_:to:expecting:)``
    /// and `AgentSDKProtobuf`'s overload call.
    ///
    /// - Throws: ``AgentError`` as ``send(_:to:expecting:)`` does; an answer of another message
    ///   type, with no message, or in another content type is ``AgentError/Code/invalidArgument``.
    @_spi(MessageFormats)
    public func send(
        _ message: EncodedMessage, to target: AgentID, expecting messageType: String, readableAs contentTypes: [String]
    ) async throws -> EncodedMessage {
        let answer = try await send(message, to: target)
        guard answer.messageType.isEmpty || answer.messageType == messageType else {
            throw AgentError(
                .invalidArgument,
                "\(target) answered \(message.messageType) with \(answer.messageType), not the expected \(messageType)")
        }
        // (An empty payload is a message in protobuf, where every field has its default; an
        // answer with neither a message type nor a payload is no answer at all.)
        guard !answer.payload.isEmpty || !answer.messageType.isEmpty else {
            throw AgentError(
                .invalidArgument, "\(target) answered \(message.messageType) with no message, not the expected \(messageType)")
        }
        let contentType = ContentType.canonical(answer.contentType)
        guard contentTypes.contains(contentType) else {
            throw AgentError(
                .invalidArgument,
                "\(target) answered \(message.messageType) with \(answer.contentType), but \(messageType) is read only as "
                    + contentTypes.joined(separator: " or "))
        }
        return EncodedMessage(messageType: answer.messageType, contentType: contentType, payload: answer.payload)
    }

    /// Sends an encoded RPC and returns whatever answer came, unchecked (SPI: what
    /// ``send(_:to:)`` and `AgentSDKProtobuf`'s overload call).
    ///
    /// - Throws: ``AgentError`` when the answer is an error.
    @_spi(MessageFormats)
    @discardableResult
    public func send(_ message: EncodedMessage, to target: AgentID) async throws -> EncodedMessage {
        let response = try await request(message, to: target)
        return EncodedMessage(messageType: response.messageType, contentType: response.contentType, payload: response.payload)
    }

    /// Writes a line to the runtime's log, tagged with the plugin and this agent.
    public func log(_ message: String, level: AgentLogger.Level = .info) {
        logger.log(level, message)
    }

    /// `state_changed` for this agent (see ``MessageContext/stateChanged()``): a no-op on
    /// runtimes older than ABI 1.2; a refusal (the agent was destroyed meanwhile) is logged.
    func stateChanged() {
        guard let status = host.stateChanged(agent: agent), status != AGENTD_OK else { return }
        logger.warning("the runtime refused state_changed for \(agentID): \(AgentError.Code(status))")
    }

    /// Sends the request and waits for the runtime's completion (which comes on a runtime
    /// thread; decoding happens back in the caller's task).
    private func request(_ message: EncodedMessage, to target: AgentID) async throws -> RPCResponse {
        let response = await withCheckedContinuation { (continuation: CheckedContinuation<RPCResponse, Never>) in
            let pending = Unmanaged.passRetained(PendingResponse(continuation)).toOpaque()
            let status = host.send(
                from: agent, to: target, messageType: message.messageType, contentType: message.contentType,
                payload: message.payload,
                onResponse: { context, response in PendingResponse.complete(context, response) },
                context: pending)
            if status != AGENTD_OK {
                // Nothing was sent: the runtime never calls on_response.
                Unmanaged<PendingResponse>.fromOpaque(pending).release()
                continuation.resume(returning: RPCResponse(status: status, error: "the runtime did not send it"))
            }
        }
        guard response.status == AGENTD_OK.rawValue else {
            let code = AgentError.Code(agentd_status(rawValue: response.status))
            let reason = response.error.isEmpty ? "\(code)" : response.error
            throw AgentError(code, "sending \(message.messageType) to \(target) failed: \(reason)")
        }
        return response
    }
}
