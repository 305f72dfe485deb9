import AgentCore
import Logging
import Synchronization

/// Answers the state protocol's requests for this runtime's agents — AutoGen's
/// `SaveStateRequest` and `LoadStateRequest`, agentd's `DeleteStateRequest` — through an
/// ``AgentStateControl``, as they come off the control channel (``HostControlChannel``).
///
/// Every request that says where its answer goes (`respond_to`) gets exactly one answer:
/// `ControlMessage{rpc_id: the request's, destination: its respond_to, respond_to: "",
/// rpcMessage: Any(the matching response)}`, with `error` set when it failed:
///
/// - the request is malformed, or names no agent: an error saying so;
/// - the runtime does not serve the agent's type: an error naming the type;
/// - a `LoadStateRequest`'s `state` begins with `data:` but is not a base64 data URL: an error
///   saying what is wrong with it (see ``StateText`` for how state text maps to bytes);
/// - the ``AgentStateControl`` call fails: its error;
/// - it has not returned within the timeout (the runtime's handler timeout): "… timed out
///   after …";
/// - the answer would be over the message size limit (a host refuses it, and AutoGen's ends
///   the sender's stream): an error giving both sizes instead;
/// - ``maxPending`` requests are being served already: an error saying to try again;
/// - the runtime shuts down first: an error saying so.
///
/// A saved state goes back as ``StateText/text(for:)`` makes it: the snapshot itself when it is
/// JSON, else a base64 data URL.
///
/// Requests are served concurrently, each in a task of its own: a slow agent holds up only
/// its own request. A message that is not a state request (a response, an unknown type) or
/// has no `respond_to` cannot be answered: it is logged and dropped.
final class StateRequestServer: Sendable {
    private struct State: ~Copyable {
        var intakeOpen = true
        var nextID: UInt64 = 0
        /// Requests being served, by a local id.
        var pending: [UInt64: Pending] = [:]
    }

    private struct Pending: Sendable {
        var answer: Answer
        var task: Task<Void, Never>?
    }

    private let agents: any AgentStateControl
    private let servesAgentType: @Sendable (String) -> Bool
    private let timeout: Duration
    private let maxMessageBytes: Int
    /// How many requests may be served at once; past it, requests are refused with an error.
    let maxPending: Int
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - agents: what saves, loads and deletes the agents' state.
    ///   - servesAgentType: whether the runtime serves an agent type now.
    ///   - timeout: how long one request may take (the runtime's handler timeout).
    ///   - maxMessageBytes: the largest answer that may be sent (the runtime's message size
    ///     limit).
    ///   - maxPending: how many requests may be served at once.
    init(agents: any AgentStateControl, servesAgentType: @escaping @Sendable (String) -> Bool, timeout: Duration,
         maxMessageBytes: Int, maxPending: Int = 1_000, logger: Logger) {
        self.agents = agents
        self.servesAgentType = servesAgentType
        self.timeout = timeout
        self.maxMessageBytes = maxMessageBytes
        self.maxPending = maxPending
        self.logger = logger
    }

    /// How many requests are being served now.
    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// Serves `message`, a `ControlMessage` from the host. `reply` receives the encoded answer
    /// (a `ControlMessage`) once, now or later, from any thread; or never, when `message`
    /// cannot be answered (logged).
    func serve(_ message: ControlPlaneCodec.ControlMessage, reply: @escaping @Sendable ([UInt8]) -> Void) {
        typealias Kind = ControlPlaneCodec.StateMessage.Kind
        guard let any = message.rpcMessage, let kind = Kind(typeURL: any.typeURL) else {
            logger.warning("control message of a type this runtime does not serve dropped", metadata: [
                "control.rpc_id": "\(message.rpcID)", "control.type": "\(message.rpcMessage?.typeURL ?? "(none)")",
                "control.respond_to": "\(message.respondTo)",
            ])
            return
        }
        guard kind.isRequest else {
            logger.debug("state response dropped: this runtime sends no state requests", metadata: [
                "control.rpc_id": "\(message.rpcID)", "control.type": "\(any.typeURL)",
            ])
            return
        }
        guard !message.respondTo.isEmpty else {
            logger.warning("state request without respond_to dropped: there is nowhere to send its answer", metadata: [
                "control.rpc_id": "\(message.rpcID)", "control.type": "\(any.typeURL)",
            ])
            return
        }
        let answer = Answer(rpcID: message.rpcID, destination: message.respondTo, kind: kind, reply: reply)
        let request: ControlPlaneCodec.StateMessage?
        do {
            request = try ControlPlaneCodec.decodeStateMessage(any)
        } catch {
            finish(answer, error: "malformed \(kind.messageName): \(error)")
            return
        }
        let operation: Operation
        switch request {
        case .saveStateRequest(let agent?) where !agent.type.isEmpty:
            operation = .save(agent)
        case .loadStateRequest(let agent?, let text) where !agent.type.isEmpty:
            do {
                operation = .load(agent, try StateText.snapshot(from: text))
            } catch {
                finish(answer, error: "cannot load the state of \(agent): \(error)")
                return
            }
        case .deleteStateRequest(let agent?) where !agent.type.isEmpty:
            operation = .delete(agent)
        default:
            finish(answer, error: "the \(kind.messageName) names no agent (its agentId, or the agent type in it, is missing)")
            return
        }
        let agent = operation.agent
        guard servesAgentType(agent.type) else {
            finish(answer, error: "agent type '\(agent.type)' is not served by this runtime (\(operation.verb) the state of \(agent))")
            return
        }
        enum Admission { case admitted(UInt64), shuttingDown, full }
        let admission: Admission = state.withLock { state in
            guard state.intakeOpen else { return .shuttingDown }
            guard state.pending.count < maxPending else { return .full }
            state.nextID += 1
            state.pending[state.nextID] = Pending(answer: answer)
            return .admitted(state.nextID)
        }
        let id: UInt64
        switch admission {
        case .admitted(let admitted):
            id = admitted
        case .shuttingDown:
            finish(answer, error: "the runtime is shutting down (\(operation.verb) the state of \(agent))")
            return
        case .full:
            logger.warning("state request refused: too many in progress", metadata: [
                "agent.id": "\(agent)", "control.rpc_id": "\(message.rpcID)", "pending.limit": "\(maxPending)",
            ])
            finish(answer, error: "\(maxPending) state requests are in progress on this runtime already; try again once they are answered (\(operation.verb) the state of \(agent))")
            return
        }
        let task = Task { await self.run(operation, answer: answer, id: id) }
        state.withLock { $0.pending[id]?.task = task }
    }

    /// New requests are answered with an error from now on (shutdown); those being served
    /// go on.
    func closeIntake() {
        state.withLock { $0.intakeOpen = false }
    }

    /// Answers every request still being served with an error giving `reason`, and cancels
    /// them. Returns how many there were.
    @discardableResult
    func abandonPending(reason: String) -> Int {
        let pending = state.withLock { state in
            state.intakeOpen = false
            defer { state.pending = [:] }
            return Array(state.pending.values)
        }
        for request in pending {
            finish(request.answer, error: reason)
            request.task?.cancel()
        }
        return pending.count
    }

    // MARK: Serving one request

    /// What a request asks of ``AgentStateControl``.
    private enum Operation: Sendable {
        case save(AgentID)
        case load(AgentID, [UInt8])
        case delete(AgentID)

        var agent: AgentID {
            switch self {
            case .save(let agent), .load(let agent, _), .delete(let agent): agent
            }
        }

        /// As in "saving the state of echo/k".
        var verb: String {
            switch self {
            case .save: "saving"
            case .load: "loading"
            case .delete: "deleting"
            }
        }
    }

    /// Runs `operation` against the deadline; the first to finish answers. An operation still
    /// running at the deadline is cancelled (``AgentStateControl`` promises to return; its
    /// late result is dropped).
    private func run(_ operation: Operation, answer: Answer, id: UInt64) async {
        enum Outcome: Sendable {
            case done(ControlPlaneCodec.StateMessage)
            case timedOut
        }
        let (agents, timeout) = (self.agents, self.timeout)
        await withTaskGroup(of: Outcome.self) { group in
            group.addTask {
                switch operation {
                case .save(let agent):
                    switch await agents.saveState(of: agent) {
                    case .success(let snapshot): .done(.saveStateResponse(state: StateText.text(for: snapshot), error: ""))
                    case .failure(let error): .done(.saveStateResponse(state: "", error: error.message))
                    }
                case .load(let agent, let snapshot):
                    .done(.loadStateResponse(error: await agents.loadState(snapshot, into: agent).errorText))
                case .delete(let agent):
                    .done(.deleteStateResponse(error: await agents.deleteState(of: agent).errorText))
                }
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return .timedOut
            }
            let first = await group.next() ?? .timedOut
            // Answer first: the group waits for the operation to return before it ends.
            state.withLock { _ = $0.pending.removeValue(forKey: id) }
            switch first {
            case .done(let response):
                send(response, with: answer)
            case .timedOut:
                let agent = operation.agent
                logger.warning("state request timed out", metadata: [
                    "agent.id": "\(agent)", "control.rpc_id": "\(answer.rpcID)", "timeout": "\(timeout)",
                ])
                finish(answer, error: "\(operation.verb) the state of \(agent) timed out after \(Self.text(timeout)) (the runtime's handler timeout); the request is withdrawn (one that had already begun may still complete)")
            }
            group.cancelAll()
        }
    }

    private func finish(_ answer: Answer, error: String) {
        if let response = answer.kind.errorResponse(error) { send(response, with: answer) }
    }

    private func send(_ response: ControlPlaneCodec.StateMessage, with answer: Answer) {
        var bytes = encode(response, answer)
        if bytes.count > maxMessageBytes, let refusal = answer.kind.errorResponse(
            "the answer is \(bytes.count) bytes, over the message size limit of \(maxMessageBytes) bytes (a state that large cannot travel over the control channel)") {
            logger.warning("state answer over the message size limit replaced by an error", metadata: [
                "control.rpc_id": "\(answer.rpcID)", "message.bytes": "\(bytes.count)", "limit": "\(maxMessageBytes)",
            ])
            bytes = encode(refusal, answer)
        }
        guard answer.send(bytes) else { return }
        logger.debug("state request answered", metadata: [
            "control.rpc_id": "\(answer.rpcID)", "control.destination": "\(answer.destination)",
            "control.type": "\(response.kind.messageName)", "error": "\(response.errorText)",
        ])
    }

    /// `response` in a `ControlMessage` answering `answer`'s request.
    private func encode(_ response: ControlPlaneCodec.StateMessage, _ answer: Answer) -> [UInt8] {
        ControlPlaneCodec.encodeControlMessage(.init(
            rpcID: answer.rpcID, destination: answer.destination,
            rpcMessage: ControlPlaneCodec.encodeStateMessage(response)))
    }

    /// `60 s`, `1.5 s`, `250 ms`.
    static func text(_ duration: Duration) -> String {
        let milliseconds = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        if milliseconds % 1000 == 0 { return "\(milliseconds / 1000) s" }
        if milliseconds >= 1000 { return "\(Double(milliseconds) / 1000) s" }
        return "\(milliseconds) ms"
    }
}

/// Where one request's answer goes, sent at most once.
private final class Answer: Sendable {
    let rpcID: String
    let destination: String
    let kind: ControlPlaneCodec.StateMessage.Kind
    private let reply: Mutex<(@Sendable ([UInt8]) -> Void)?>

    init(rpcID: String, destination: String, kind: ControlPlaneCodec.StateMessage.Kind,
         reply: @escaping @Sendable ([UInt8]) -> Void) {
        self.rpcID = rpcID
        self.destination = destination
        self.kind = kind
        self.reply = Mutex(reply)
    }

    /// Hands `bytes` to the reply, unless an answer went already; returns whether it did.
    func send(_ bytes: [UInt8]) -> Bool {
        guard let reply = self.reply.withLock({ reply in defer { reply = nil }; return reply }) else { return false }
        reply(bytes)
        return true
    }
}

private extension Result where Success == Void, Failure == StateControlError {
    /// Empty on success (the protocol's "no error").
    var errorText: String {
        if case .failure(let error) = self { error.message } else { "" }
    }
}

private extension ControlPlaneCodec.StateMessage {
    /// The response's `error` (empty for a request).
    var errorText: String {
        switch self {
        case .saveStateResponse(_, let error), .loadStateResponse(let error), .deleteStateResponse(let error): error
        case .saveStateRequest, .loadStateRequest, .deleteStateRequest: ""
        }
    }
}
