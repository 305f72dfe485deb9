#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import AgentPluginABI
import Logging
import Synchronization

/// Calls a plugin's handler with one message and sees that the message is answered: at once
/// from the handler's return status, later through `reply`/`fail` for a call left
/// AGENTD_PENDING, or with an error when a pending call outlives the handler timeout.
final class HandlerInvoker: Sendable {
    private let outbox: Outbox
    private let calls: HandleTable<HandlerCall>
    private let retirement: PluginRetirement
    /// How long a handler may leave a message pending before it is answered with an error.
    let handlerTimeout: Duration
    private let logger: Logger
    /// Deadlines of the calls left pending, by handle.
    private let deadlines = Mutex(DeadlineQueue<UInt>())

    init(outbox: Outbox, calls: HandleTable<HandlerCall>, retirement: PluginRetirement, handlerTimeout: Duration,
         logger: Logger) {
        self.outbox = outbox
        self.calls = calls
        self.retirement = retirement
        self.handlerTimeout = handlerTimeout
        self.logger = logger
    }

    /// Runs `handler` for `message` on `agent`'s plugin `instance` (on the worker thread that
    /// owns the agent meanwhile).
    /// - Returns: the call, if the handler left it pending (the agent waits for it).
    func invoke(_ handler: agentd_handler_fn, instance: PluginInstance, message: IncomingMessage, agent: AgentInstance,
                type: PluginAgentType) -> HandlerCall? {
        let isRPC = message.kind == .request
        let messageType = message.messageType.string
        let requestID = isRPC ? message.messageID.string : ""
        let plugin = type.plugin
        plugin.activityDidStart()
        agent.handlerTally?.called()
        let checkpoints = agent.keepsState(type)
        let call = calls.insert {
            HandlerCall(handle: $0, agent: agent, plugin: plugin, isRPC: isRPC, requestID: requestID,
                        messageType: messageType, checkpoints: checkpoints)
        }
        var view = agentd_message()
        view.size = UInt32(MemoryLayout<agentd_message>.size)
        view.host = UnsafePointer(HostAPI.table)
        view.agent = agent.handle
        view.agent_type = agent.typeView
        view.agent_key = agent.keyView
        view.sender_type = message.senderType
        view.sender_key = message.senderKey
        view.topic_type = message.topicType
        view.topic_source = message.topicSource
        view.message_id = message.messageID
        view.message_type = message.messageType
        view.content_type = message.contentType
        view.payload = message.payload
        view.is_rpc = isRPC ? 1 : 0
        view.call = call.handle
        // A traced message: the handler runs in a new span of its trace, and what it sends
        // carries that span.
        let trace = message.traceparent.isEmpty
            ? nil : TraceContext(traceparent: message.traceparent.string, tracestate: message.tracestate.string)?.child()
        // (No-op for an untraced message to an agent whose last message was untraced too.)
        agent.setTrace(trace)
        let status: agentd_status
        if let trace {
            status = trace.traceparent.withCString { parent in
                trace.state.withCString { state in
                    view.traceparent = agentd_str(data: parent, length: strlen(parent))
                    view.tracestate = agentd_str(data: state, length: strlen(state))
                    return withExtendedLifetime(message) { handler(instance.pointer, &view) }
                }
            }
        } else {
            status = withExtendedLifetime(message) { handler(instance.pointer, &view) }
        }
        if trace != nil, status != AGENTD_PENDING { agent.setTrace(nil) }
        if status == AGENTD_PENDING {
            let deadline = ContinuousClock.now + handlerTimeout
            call.timed.store(true, ordering: .sequentiallyConsistent)
            deadlines.withLock { $0.schedule(call.key, at: deadline) }
            // Answered meanwhile (from another thread): nothing to time.
            if calls.resolve(call.handle) == nil {
                deadlines.withLock { _ = $0.cancel(call.key) }
                // Answered as stuck while it ran: the plugin may still answer (refused then).
                if call.expiredWhileRunning.load(ordering: .sequentiallyConsistent) { agent.handlerDidReturn(call) }
            }
            return call
        }
        // Answered already (reply/fail during the handler, or an error while it was stuck),
        // or answered now.
        guard calls.remove(call.handle) != nil else {
            if call.expiredWhileRunning.load(ordering: .sequentiallyConsistent) {
                agent.handlerDidReturn(call)
                retirement.activityDidEnd(plugin)
                logger.warning("a handler answered as stuck has returned", metadata: [
                    "agent.id": "\(agent.id)", "plugin": "\(plugin.name)", "message.type": "\(messageType)",
                    "status": "\(StatusText.name(status))",
                ])
            }
            return nil
        }
        defer { retirement.activityDidEnd(plugin) }
        if status != AGENTD_OK { agent.handlerTally?.failed() }
        if isRPC {
            if status == AGENTD_OK {
                answer(call, .reply(messageType: "", contentType: "application/json", payload: []))
            } else {
                answer(call, .error("The handler for '\(messageType)' of agent \(agent.id) failed with \(StatusText.name(status))."))
            }
        } else if status != AGENTD_OK {
            logger.warning("event handler failed", metadata: [
                "agent.id": "\(agent.id)", "message.type": "\(messageType)", "status": "\(StatusText.name(status))",
            ])
        }
        return nil
    }

    /// Answers a message its agent type has no handler for.
    func refuseUnhandled(_ message: IncomingMessage, agent: AgentInstance, type: PluginAgentType) {
        let messageType = message.messageType.string
        if message.kind == .request {
            let handled = type.messageTypes.joined(separator: ", ")
            outbox.answer(requestID: message.messageID.string, error: "Agent type '\(type.name)' has no handler for message type '\(messageType)' (it handles: \(handled.isEmpty ? "nothing" : handled)).")
        } else {
            logger.debug("event without a handler dropped", metadata: ["agent.id": "\(agent.id)", "message.type": "\(messageType)"])
        }
    }

    /// Answers a message to a type whose plugin is disabled (RPCs with the reason; events
    /// dropped, logged at debug level).
    func refuseDisabled(_ message: IncomingMessage, agent: AgentInstance, type: PluginAgentType) {
        let reason = type.plugin.disabled ?? "plugin \(type.plugin.name) is disabled"
        if message.kind == .request {
            outbox.answer(requestID: message.messageID.string, error: "Agent type '\(type.name)' is not served: \(reason)")
        } else {
            logger.debug("event for a disabled plugin dropped", metadata: [
                "agent.id": "\(agent.id)", "plugin": "\(type.plugin.name)", "message.type": "\(message.messageType.string)",
            ])
        }
    }

    /// Answers a message whose agent could not be created (or restored): logged at error
    /// level the first time in a row, then at debug level.
    func refuse(_ message: IncomingMessage, agent: AgentInstance, type: PluginAgentType, creationFailure: String,
                firstTime: Bool) {
        if message.kind == .request { outbox.answer(requestID: message.messageID.string, error: creationFailure) }
        logger.log(level: firstTime ? .error : .debug, "agent could not be created", metadata: [
            "agent.id": "\(agent.id)", "plugin": "\(type.plugin.name)", "error": "\(creationFailure)",
        ])
    }

    /// Sends an RPC's answer, or holds it for the agent's checkpoint.
    private func answer(_ call: HandlerCall, _ content: HeldAnswer.Content) {
        if call.holdsAnswer {
            call.agent.hold(HeldAnswer(requestID: call.requestID, content: content))
            return
        }
        switch content {
        case .error(let text):
            outbox.answer(requestID: call.requestID, error: text)
        case .reply(let messageType, let contentType, let payload):
            payload.withUnsafeBytes {
                outbox.answer(requestID: call.requestID, messageType: messageType, contentType: contentType, payload: $0)
            }
        }
    }

    /// Answers a message whose agent type is gone (its plugin was removed).
    func refuseForRemovedType(_ message: IncomingMessage, agent: AgentInstance) {
        if message.kind == .request {
            outbox.answer(requestID: message.messageID.string,
                          error: "Agent type '\(agent.id.type)' is no longer served: its plugin was removed from this runtime.")
        } else {
            logger.info("event for a removed agent type dropped", metadata: [
                "agent.id": "\(agent.id)", "message.type": "\(message.messageType.string)",
            ])
        }
    }

    // MARK: Answers (any thread)

    /// A call taken out of its table (it is being answered) no longer needs its deadline.
    func didTake(_ call: HandlerCall) {
        guard call.timed.load(ordering: .sequentiallyConsistent) else { return }
        deadlines.withLock { _ = $0.cancel(call.key) }
    }

    /// `reply` on a call taken out of its table: answers the RPC (an event's payload is
    /// ignored), and the agent goes on.
    func reply(_ call: HandlerCall, messageType: agentd_str, contentType: agentd_str, payload: agentd_bytes) {
        if call.isRPC {
            if call.holdsAnswer {
                answer(call, .reply(messageType: messageType.string, contentType: contentType.string,
                                    payload: Array(payload.buffer)))
            } else {
                outbox.answer(requestID: call.requestID, messageType: messageType.string,
                              contentType: contentType.string, payload: payload.buffer)
            }
        }
        finish(call)
    }

    /// `fail` on a call taken out of its table: answers the RPC with an error (an event's
    /// failure is logged), and the agent goes on.
    func fail(_ call: HandlerCall, status: agentd_status, message: String) {
        call.agent.handlerTally?.failed()
        let text = message.isEmpty ? "The handler for '\(call.messageType)' of agent \(call.agent.id) failed with \(StatusText.name(status))." : message
        if call.isRPC {
            answer(call, .error(text))
        } else {
            logger.warning("event handler failed", metadata: [
                "agent.id": "\(call.agent.id)", "message.type": "\(call.messageType)", "error": "\(text)",
            ])
        }
        finish(call)
    }

    /// Answers the pending calls past their deadline with an error, and lets their agents go
    /// on. (The plugin stays loaded: its code may still answer late, which is then refused.)
    func expire(now: ContinuousClock.Instant) {
        let expired = deadlines.withLock { $0.removeExpired(now: now) }
        for key in expired {
            guard let call = calls.remove(OpaquePointer(bitPattern: key)) else { continue }
            call.agent.handlerTally?.failed()
            let text = "The handler for '\(call.messageType)' of agent \(call.agent.id) did not finish within \(handlerTimeout)."
            if call.isRPC { outbox.answer(requestID: call.requestID, error: text) }
            logger.error("handler timed out", metadata: [
                "agent.id": "\(call.agent.id)", "plugin": "\(call.plugin.name)", "message.type": "\(call.messageType)",
                "timeout": "\(handlerTimeout)",
            ])
            call.agent.callDidComplete(call)
        }
    }

    /// The call of the handler running now on `agent` (one not left pending), if any.
    func runningCall(of agent: AgentInstance) -> HandlerCall? {
        calls.all.first { $0.agent === agent && !$0.timed.load(ordering: .sequentiallyConsistent) }
    }

    /// Answers the message of a handler still running past the handler timeout (`elapsed` so
    /// far) with an error, without waiting for it, and marks its agent stuck: RPCs waiting for
    /// it are answered with an error too, and new ones are refused until the handler returns.
    /// The plugin stays loaded: its code is still running.
    /// - Returns: the RPCs taken out of the agent's mailbox and answered; nil if the handler
    ///   returned (or the call was answered) meanwhile.
    func expireRunning(_ call: HandlerCall, after elapsed: Duration) -> Int? {
        let agent = call.agent
        // Marked before the call is taken: a handler returning in between either finds the
        // call (and this undoes the mark) or finds it gone with the flag set (and clears it).
        guard agent.markStuck(call) else { return nil }
        call.expiredWhileRunning.store(true, ordering: .sequentiallyConsistent)
        guard calls.remove(call.handle) != nil else {
            agent.handlerDidReturn(call)
            return nil
        }
        agent.handlerTally?.failed()
        if call.isRPC {
            outbox.answer(requestID: call.requestID, error: Self.stuckText(call, elapsed: elapsed, timeout: handlerTimeout))
        }
        // Marks the call answered: the agent does not wait for it if the handler returns
        // AGENTD_PENDING.
        agent.callDidComplete(call)
        let waiting = agent.takeQueuedRequests(stuckOn: call)
        for message in waiting {
            outbox.answer(requestID: message.messageID.string, error: StuckHandlerWatch.refusal(agent, timeout: handlerTimeout))
        }
        return waiting.count
    }

    /// What a caller is told about a handler stuck past the handler timeout.
    static func stuckText(_ call: HandlerCall, elapsed: Duration, timeout: Duration) -> String {
        "The handler for '\(call.messageType)' of agent \(call.agent.id.clipped) (plugin \(call.plugin.name) \(call.plugin.version)) has been running for \(StateRequestServer.text(elapsed)) without returning, past the handler timeout (\(StateRequestServer.text(timeout))); the request failed."
    }

    /// Answers every open call with `reason` (shutdown); returns how many there were.
    func abandonAll(reason: String) -> Int {
        let open = calls.removeAll { _ in true }
        _ = deadlines.withLock { $0.removeAll() }
        for call in open {
            if call.isRPC { outbox.answer(requestID: call.requestID, error: reason) }
            call.agent.callDidComplete(call)
        }
        return open.count
    }

    /// A call is answered: the plugin has one thing less running, the agent may go on.
    private func finish(_ call: HandlerCall) {
        call.agent.callDidComplete(call)
        retirement.activityDidEnd(call.plugin)
    }
}
