import AgentCore
import GRPCTransport
import Logging
import Synchronization

/// Routes what arrives from the host inside this runtime: an event to the mailbox of every
/// local agent whose type subscribes to its topic, an RPC to its target agent's mailbox (or an
/// error answer when the type is not served here), a response to the request waiting for it.
///
/// It keeps the agent types this runtime serves (the versions the ``Reloader`` put in place)
/// and the agents created so far, each created on its first message.
final class LocalRouter: Sendable {
    private struct Routing: ~Copyable {
        /// Agent types this runtime serves.
        var types: [String: PluginAgentType] = [:]
        /// Their subscriptions, to pick the local agent types an event reaches.
        var subscriptions = SubscriptionIndex()
        var agents: [AgentID: AgentInstance] = [:]
        /// Types that were served and are not any more (for clearer answers).
        var withdrawn: Set<String> = []
    }

    private let context: DispatchContext
    private let handles: HandleTable<AgentInstance>
    /// Messages that may wait for one agent.
    let mailboxLimit: Int
    private let logger: Logger
    private let routing = Mutex(Routing())
    private let intakeOpen = Atomic<Bool>(true)
    private let overloadRefusals = Atomic<Int>(0)
    private let refusedAtShutdown = Atomic<Int>(0)

    init(context: DispatchContext, handles: HandleTable<AgentInstance>, mailboxLimit: Int, logger: Logger) {
        self.context = context
        self.handles = handles
        self.mailboxLimit = mailboxLimit
        self.logger = logger
    }

    // MARK: Serving agent types

    /// Changes which agent types (and versions) this runtime serves: `types` replace the
    /// served versions of the same names or add new names; `withdrawn` names stop being
    /// served. Existing agents move to the new version between two messages, or — for a
    /// withdrawn type — answer what reaches them with an error. (Registration with the host is
    /// the ``HostRegistrations``' business.)
    func serve(_ types: [PluginAgentType], withdrawing withdrawn: Set<String> = []) {
        let retargets: [(AgentInstance, PluginAgentType?)] = routing.withLock { routing in
            for name in withdrawn { routing.types[name] = nil }
            routing.withdrawn.formUnion(withdrawn)
            for type in types {
                routing.types[type.name] = type
                routing.withdrawn.remove(type.name)
            }
            var index = SubscriptionIndex()
            for type in routing.types.values {
                for (number, kind) in type.subscriptions.enumerated() {
                    // Validated by the loader, unique by construction.
                    try? index.insert(Subscription(id: "\(type.name)#\(number)", agentType: type.name, kind: kind))
                }
            }
            routing.subscriptions = index
            let changed = Set(types.map(\.name)).union(withdrawn)
            return routing.agents.values.filter { changed.contains($0.id.type) }.map { ($0, routing.types[$0.id.type]) }
        }
        for (agent, type) in retargets { agent.retarget(to: type) }
    }

    /// The names of the agent types served, sorted.
    var servedTypes: [String] { routing.withLock { $0.types.keys.sorted() } }

    /// Every agent created so far.
    var agents: [AgentInstance] { routing.withLock { Array($0.agents.values) } }

    // MARK: Intake (the thread that read the message)

    /// Routes one message from the host.
    func receive(_ buffer: MessageBuffer) {
        guard let message = buffer.withUnsafeBytes({ IncomingMessage($0) }) else {
            logger.warning("malformed message from the host dropped", metadata: ["message.bytes": "\(buffer.count)"])
            return
        }
        if message.kind != .response && !intakeOpen.load(ordering: .acquiring) {
            refuseWhileShuttingDown(message)
            return
        }
        switch message.kind {
        case .event: route(event: message)
        case .request: route(request: message)
        case .response:
            if !context.requests.complete(message) {
                logger.debug("response to no waiting request dropped", metadata: ["request.id": "\(message.messageID.string)"])
            }
        }
    }

    private func route(event message: IncomingMessage) {
        let topicType = message.topicType.string
        let key = message.topicSource.string
        let senderType = message.senderType.string
        let senderKey = message.senderKey.string
        let targets: [PluginAgentType] = routing.withLock { routing in
            routing.subscriptions.agentTypes(matching: topicType).compactMap { routing.types[$0] }
        }
        for type in targets {
            // An agent does not receive its own publish.
            if type.name == senderType && key == senderKey { continue }
            let agent = agent(type: type, key: key)
            if !agent.deliver(message, limit: mailboxLimit) { refuseOverloaded(message, agent) }
        }
    }

    private func route(request message: IncomingMessage) {
        let typeName = message.targetType.string
        let (served, wasServed) = routing.withLock { ($0.types[typeName], $0.withdrawn.contains(typeName)) }
        guard let type = served else {
            let target = "\(typeName)/\(message.targetKey.string)"
            context.outbox.answer(requestID: message.messageID.string, error: wasServed
                ? "Agent type '\(typeName)' is no longer served: its plugin was removed from this runtime (request to \(target))."
                : "Agent type '\(typeName)' is not served by this runtime (request to \(target)).")
            return
        }
        let agent = agent(type: type, key: message.targetKey.string)
        if !agent.deliver(message, limit: mailboxLimit) { refuseOverloaded(message, agent) }
    }

    /// The agent (type, key), created on its first message.
    private func agent(type: PluginAgentType, key: String) -> AgentInstance {
        let id = AgentID(type: type.name, key: key)
        let (context, handles) = (self.context, self.handles)
        return routing.withLock { routing in
            if let existing = routing.agents[id] { return existing }
            let created = handles.insert { AgentInstance(handle: $0, id: id, type: type, context: context) }
            routing.agents[id] = created
            return created
        }
    }

    /// A full mailbox: the RPC is answered with an error, the event dropped — counted and
    /// logged (the first, then every 1,000th).
    private func refuseOverloaded(_ message: IncomingMessage, _ agent: AgentInstance) {
        let count = overloadRefusals.wrappingAdd(1, ordering: .relaxed).newValue
        if message.kind == .request {
            context.outbox.answer(requestID: message.messageID.string,
                                  error: "Agent \(agent.id) is overloaded: \(mailboxLimit) messages are waiting for it; the request was not delivered.")
        }
        if count == 1 || count % 1000 == 0 {
            logger.warning("mailbox full: message refused", metadata: [
                "agent.id": "\(agent.id)", "mailbox.limit": "\(mailboxLimit)", "refused": "\(count)",
                "message.kind": "\(message.kind == .request ? "rpc" : "event")",
            ])
        }
    }

    // MARK: Shutting down

    /// From now on, requests are answered with an error and events dropped (counted).
    func closeIntake() { intakeOpen.store(false, ordering: .releasing) }

    private func refuseWhileShuttingDown(_ message: IncomingMessage) {
        refusedAtShutdown.add(1, ordering: .relaxed)
        if message.kind == .request {
            context.outbox.answer(
                requestID: message.messageID.string,
                error: "The runtime serving \(message.targetType.string)/\(message.targetKey.string) is shutting down.")
        }
    }

    /// Waits until no agent has work (running, pending or queued), or `deadline`. True if idle.
    func waitUntilIdle(deadline: ContinuousClock.Instant) async -> Bool {
        while ContinuousClock.now < deadline {
            if agents.allSatisfy(\.isIdle) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return agents.allSatisfy(\.isIdle)
    }

    /// Answers every queued request with `reason` and drops queued events; returns how many
    /// requests were answered.
    func abandonQueued(reason: String) -> Int {
        var answered = 0
        for agent in agents {
            for message in agent.takeQueued() where message.kind == .request {
                context.outbox.answer(requestID: message.messageID.string, error: reason)
                answered += 1
            }
        }
        return answered
    }

    /// Destroys every agent's plugin instance and its handle (the runtime has stopped).
    func destroyAgents() {
        let all = routing.withLock { routing in
            defer { routing.agents.removeAll() }
            return Array(routing.agents.values)
        }
        for agent in all {
            agent.destroyInstance()
            _ = handles.remove(agent.handle)
        }
    }
}
