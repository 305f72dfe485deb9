import AgentCore
import CRuntimeSupport
import GRPCTransport
import Logging
import Synchronization

/// Routes what arrives from the host inside this runtime: an event to the mailbox of every
/// local agent whose type subscribes to its topic, an RPC to its target agent's mailbox (or an
/// error answer when the type is not served here), a response to the request waiting for it.
///
/// It keeps the agent types this runtime serves (the versions the ``Reloader`` put in place)
/// and the resident agents, each created on its first message and retired when idle for
/// `idle` or when more than `maxResident` are resident (least recently used first).
final class LocalRouter: Sendable {
    private struct Routing: ~Copyable {
        /// Agent types this runtime serves.
        var types: [String: PluginAgentType] = [:]
        /// Their subscriptions, to pick the local agent types an event reaches.
        var subscriptions = SubscriptionIndex()
        var agents: [AgentID: AgentInstance] = [:]
        /// Types that were served and are not any more (for clearer answers).
        var withdrawn: Set<String> = []
        /// Shared types → the workers (client ids) serving them, as the host last said.
        var placements: [String: [String]] = [:]

        /// Makes ``subscriptions`` again from the served types' declarations.
        mutating func indexSubscriptions() {
            var index = SubscriptionIndex()
            for type in types.values {
                for (number, kind) in type.subscriptions.enumerated() {
                    // Validated by the loader, unique by construction.
                    try? index.insert(Subscription(id: "\(type.name)#\(number)", agentType: type.name, kind: kind))
                }
            }
            subscriptions = index
        }

        /// Whether key `key` of shared type `type` is placed on this runtime (`selfID`); true
        /// until the host has said who serves the type.
        func owns(_ type: String, key: String, selfID: String) -> Bool {
            guard let members = placements[type] else { return true }
            return Placement.owner(type: type, key: key, among: members) == selfID
        }
    }

    /// When agents are retired.
    struct Residency: Sendable {
        /// Retire an agent that received nothing for this long (zero: never for idleness).
        var idle: Duration
        /// At most this many resident agents; past it the least recently used are retired.
        var maxResident: Int
        /// At most this many bytes held by resident agents (``AgentInstance/residentBytes``:
        /// their ids and the state they hold); past it the least recently used are retired.
        var maxBytes: Int = .max
        static let unbounded = Residency(idle: .zero, maxResident: .max)

        /// How often the router's clock ticks (agents' last activity is kept in ticks).
        var tickInterval: Duration {
            guard idle > .zero else { return .seconds(1) }
            return max(.milliseconds(10), min(.seconds(1), idle / 4))
        }
    }

    private let context: DispatchContext
    private let handles: HandleTable<AgentInstance>
    /// Messages that may wait for one agent (`[runtime] mailbox_limit`; SIGHUP may change it:
    /// a mailbox already past a lowered limit keeps its messages and refuses new ones).
    var mailboxLimit: Int {
        get { mailboxLimitValue.load(ordering: .relaxed) }
        set { mailboxLimitValue.store(newValue, ordering: .relaxed) }
    }
    private let mailboxLimitValue: Atomic<Int>
    let residency: Residency
    private let logger: Logger
    private let routing = Mutex(Routing())
    /// The router's clock: advanced every ``Residency/tickInterval`` by ``sweep()``.
    private let tick = Atomic<Int>(1)
    /// A retirement pass for `maxResident` is under way.
    private let evicting = Atomic<Bool>(false)
    private let retired = Atomic<Int>(0)
    /// Retirements for `maxResident` queued and not run yet, and the bytes they will free.
    private let evictionsQueued = Atomic<Int>(0)
    private let evictionBytesQueued = Atomic<Int>(0)
    /// Bytes of retired agents not yet handed back to the system (``sweep()`` trims malloc's
    /// free lists past 16 MiB).
    private let releasedSinceTrim = Atomic<Int>(0)
    private let oversizedDropped = Atomic<Int>(0)

    /// Agents retired so far.
    var retiredCount: Int { retired.load(ordering: .relaxed) }
    private let intakeOpen = Atomic<Bool>(true)
    /// Events of our runtimes already delivered: one sent again after a reconnection (its host
    /// had not acknowledged it) is dropped.
    private let delivered = Mutex(DuplicateWindow())
    /// Events dropped as duplicates.
    private let duplicates = Atomic<Int>(0)

    /// Events dropped because they had been delivered already.
    var duplicatesDropped: Int { duplicates.load(ordering: .relaxed) }
    private let overloadRefusals = Atomic<Int>(0)
    /// Messages refused so far because their agent's mailbox was full.
    var overloadRefusalCount: Int { overloadRefusals.load(ordering: .relaxed) }
    private let refusedAtShutdown = Atomic<Int>(0)

    /// This runtime's client id (the host's name for it in placement notices).
    let clientID: String

    init(context: DispatchContext, handles: HandleTable<AgentInstance>, mailboxLimit: Int,
         residency: Residency = .unbounded, clientID: String = "", logger: Logger) {
        self.clientID = clientID
        self.context = context
        self.handles = handles
        mailboxLimitValue = Atomic(mailboxLimit)
        self.residency = residency
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
            routing.indexSubscriptions()
            let changed = Set(types.map(\.name)).union(withdrawn)
            return routing.agents.values.filter { changed.contains($0.id.type) }.map { ($0, routing.types[$0.id.type]) }
        }
        for (agent, type) in retargets { agent.retarget(to: type) }
    }

    /// Stops serving `names`, which the host refused to register for this runtime (no agent
    /// of them can have been reached: the host never routed to them here).
    func forget(_ names: Set<String>) {
        routing.withLock { routing in
            for name in names { routing.types[name] = nil }
            routing.indexSubscriptions()
        }
    }

    /// The names of the agent types served, sorted.
    var servedTypes: [String] { routing.withLock { $0.types.keys.sorted() } }

    /// Every resident agent.
    var agents: [AgentInstance] { routing.withLock { Array($0.agents.values) } }

    /// How many agents are resident.
    var residentCount: Int { routing.withLock { $0.agents.count } }

    /// Bytes the resident agents hold, as ``AgentInstance/residentBytes`` counts them.
    var residentBytes: Int { context.residentBytes.load(ordering: .relaxed) }

    /// Past ``Residency/maxResident`` or ``Residency/maxBytes``.
    private var overResidencyBound: Bool {
        residentCount > residency.maxResident || residentBytes > residency.maxBytes
    }

    // MARK: Intake (the thread that read the message)

    /// Routes one message from the host.
    func receive(_ buffer: MessageBuffer) {
        guard let message = buffer.withUnsafeBytes({ IncomingMessage($0) }) else {
            logger.warning("malformed message from the host dropped", metadata: ["message.bytes": "\(buffer.count)"])
            return
        }
        context.metrics?.intake.received(message.kind)
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
        // The host's limits (``FieldLimits``), checked here too: a host without them (AutoGen's)
        // could make this runtime keep agents of any key.
        if message.topicType.length > FieldLimits.topicType || message.topicSource.length > FieldLimits.topicSource {
            let count = oversizedDropped.wrappingAdd(1, ordering: .relaxed).newValue
            if count == 1 || count % 1000 == 0 {
                let (field, length, limit) = message.topicType.length > FieldLimits.topicType
                    ? ("CloudEvent.type (topic type)", message.topicType.length, FieldLimits.topicType)
                    : ("CloudEvent.source (topic source, the receiving agents' key)", message.topicSource.length, FieldLimits.topicSource)
                logger.warning("event dropped: a field is longer than this runtime takes", metadata: [
                    "field": "\(field)", "bytes": "\(length)", "limit": "\(limit)", "dropped": "\(count)",
                ])
            }
            return
        }
        if let data = message.messageID.data,
           let (publisher, sequence) = Delivery.parseEventID(UnsafeRawBufferPointer(start: data, count: message.messageID.length)),
           !delivered.withLock({ $0.firstDelivery(of: sequence, from: publisher) }) {
            let count = duplicates.wrappingAdd(1, ordering: .relaxed).newValue
            if count == 1 || count % 1000 == 0 {
                logger.info("event received again after a reconnection dropped (delivered already)", metadata: [
                    "event.id": "\(message.messageID.string)", "duplicates": "\(count)",
                ])
            }
            return
        }
        let topicType = message.topicType.string
        let key = message.topicSource.string
        if topicType == Placement.noticeTopicType, message.senderType.length == 0 {
            return placementChanged(type: key, members: String(decoding: message.payload.buffer, as: UTF8.self))
        }
        let senderType = message.senderType.string
        let senderKey = message.senderKey.string
        let selfID = clientID
        let targets: [PluginAgentType] = routing.withLock { routing in
            routing.subscriptions.agentTypes(matching: topicType).compactMap { name in
                guard let type = routing.types[name] else { return nil }
                // A shared type's event is for the runtime its key is placed on.
                return !type.isShared || routing.owns(name, key: key, selfID: selfID) ? type : nil
            }
        }
        for type in targets {
            // An agent does not receive its own publish.
            if type.name == senderType && key == senderKey { continue }
            deliver(message, type: type, key: key)
        }
    }

    private func route(request message: IncomingMessage) {
        // The host's limits (``FieldLimits``), checked here too (see ``route(event:)``); the
        // refusal is composed only for a field over its limit (this is every RPC's path).
        if message.targetType.length > FieldLimits.agentType || message.targetKey.length > FieldLimits.agentKey {
            let (field, length, limit) = message.targetType.length > FieldLimits.agentType
                ? ("RpcRequest.target.type", message.targetType.length, FieldLimits.agentType)
                : ("RpcRequest.target.key", message.targetKey.length, FieldLimits.agentKey)
            return context.outbox.answer(requestID: message.messageID.string, error:
                "\(field) is \(length) bytes long; this runtime takes at most \(limit) bytes there.")
        }
        let typeName = message.targetType.string
        let (served, wasServed) = routing.withLock { ($0.types[typeName], $0.withdrawn.contains(typeName)) }
        guard let type = served else {
            let target = "\(typeName)/\(message.targetKey.string)"
            context.outbox.answer(requestID: message.messageID.string, error: wasServed
                ? "Agent type '\(typeName)' is no longer served: its plugin was removed from this runtime (request to \(target))."
                : "Agent type '\(typeName)' is not served by this runtime (request to \(target)).")
            return
        }
        deliver(message, type: type, key: message.targetKey.string)
    }

    /// Queues `message` for agent (type, key), created if not resident.
    private func deliver(_ message: IncomingMessage, type: PluginAgentType, key: String) {
        let now = tick.load(ordering: .relaxed)
        while true {
            let agent = agent(type: type, key: key)
            switch agent.deliver(message, limit: mailboxLimit, tick: now) {
            case .accepted: return
            case .full: return refuseOverloaded(message, agent)
            case .stuck:
                return context.outbox.answer(requestID: message.messageID.string,
                                             error: StuckHandlerWatch.refusal(agent, timeout: context.invoker.handlerTimeout))
            case .retired: continue  // retired meanwhile: its successor activates from the store
            }
        }
    }

    /// The agent (type, key), created on its first message.
    func agent(type: PluginAgentType, key: String) -> AgentInstance {
        let id = AgentID(type: type.name, key: key)
        let (context, handles, now) = (self.context, self.handles, tick.load(ordering: .relaxed))
        let (agent, created) = routing.withLock { routing in
            if let existing = routing.agents[id] { return (existing, false) }
            let created = handles.insert { AgentInstance(handle: $0, id: id, type: type, context: context, tick: now) }
            routing.agents[id] = created
            return (created, true)
        }
        if created {
            context.residentBytes.add(agent.residentBytes, ordering: .relaxed)
            if overResidencyBound { evictLeastRecentlyUsed() }
        }
        return agent
    }

    /// The served version of agent type `name`, or why there is none.
    func servedType(_ name: String) -> PluginAgentType? {
        routing.withLock { $0.types[name] }
    }

    /// Takes a retired agent out of the table if nothing came for it meanwhile (its job runs
    /// on its worker). True if it is out.
    func remove(_ agent: AgentInstance) -> Bool {
        let removed: Bool = routing.withLock { routing in
            guard routing.agents[agent.id] === agent, agent.markRetiredIfUnused() else { return false }
            routing.agents[agent.id] = nil
            return true
        }
        if removed {
            _ = handles.remove(agent.handle)
            retired.add(1, ordering: .relaxed)
            let bytes = agent.residentBytes
            context.residentBytes.subtract(bytes, ordering: .relaxed)
            releasedSinceTrim.add(bytes, ordering: .relaxed)
        }
        return removed
    }

    // MARK: Shared types

    /// The host says which workers serve shared type `type` now (one client id per line):
    /// the keys placed elsewhere are let go (final checkpoint, destroy).
    private func placementChanged(type: String, members text: String) {
        let members = text.split(separator: "\n").map(String.init).sorted()
        routing.withLock { $0.placements[type] = members }
        logger.info("shared agent type's placement changed", metadata: [
            "agent.type": "\(type)", "client.ids": "\(members)", "serves.here": "\(members.contains(clientID))",
        ])
        releaseMovedKeys()
    }

    /// Retires the resident agents of shared types whose keys are placed on another runtime
    /// now (each once it is idle: what was queued for it before the move is handled first).
    private func releaseMovedKeys() {
        let selfID = clientID
        let moved: [AgentInstance] = routing.withLock { routing in
            guard !routing.placements.isEmpty else { return [] }
            return routing.agents.values.filter { agent in
                routing.placements[agent.id.type] != nil && !routing.owns(agent.id.type, key: agent.id.key, selfID: selfID)
            }
        }
        for agent in moved {
            _ = agent.enqueueIfIdle(since: .max) { [weak self] in if let self { $0.retire(from: self, reason: "moved") } }
        }
    }

    /// Shared types → the workers serving them, as the host last said.
    var placements: [String: [String]] { routing.withLock { $0.placements } }

    /// Keys of shared types placed on this runtime, by type (for status and tests).
    var sharedKeyCounts: [String: Int] {
        routing.withLock { routing in
            var counts: [String: Int] = [:]
            for id in routing.agents.keys where routing.placements[id.type] != nil { counts[id.type, default: 0] += 1 }
            return counts
        }
    }

    // MARK: Residency

    /// Advances the clock and retires the agents idle for ``Residency/idle`` (called every
    /// ``Residency/tickInterval``).
    func sweep() {
        let now = tick.add(1, ordering: .relaxed).newValue
        releaseMovedKeys()
        // Memory retired agents freed goes back to the system (malloc keeps freed blocks of
        // under 128 KiB — keys, snapshots — in its free lists otherwise).
        if releasedSinceTrim.load(ordering: .relaxed) > 16 << 20 {
            releasedSinceTrim.store(0, ordering: .relaxed)
            agentd_release_free_memory()
        }
        guard residency.idle > .zero else {
            // A pass may have left some (busy then): the bound is checked at every tick too.
            if overResidencyBound { evictLeastRecentlyUsed() }
            return
        }
        let ticks = Int((residency.idle / residency.tickInterval).rounded(.up))
        let since = now - ticks
        if overResidencyBound { evictLeastRecentlyUsed() }
        for agent in agents {
            _ = agent.enqueueIfIdle(since: since) { [weak self] in if let self { $0.retire(from: self, reason: "idle") } }
        }
    }

    /// Retires the least recently used idle agents until a tenth below ``Residency/maxResident``
    /// and ``Residency/maxBytes`` (in the background: the intake goes on meanwhile).
    /// Retirements queued by an earlier pass and not done yet count as done, so passes that
    /// overlap do not retire twice over.
    private func evictLeastRecentlyUsed() {
        guard !evicting.exchange(true, ordering: .acquiring) else { return }
        Task.detached { [self] in
            defer { evicting.store(false, ordering: .releasing) }
            let target = residency.maxResident - residency.maxResident / 10
            let byteTarget = residency.maxBytes - residency.maxBytes / 10
            let excess = residentCount - target - evictionsQueued.load(ordering: .relaxed)
            let excessBytes = residentBytes - byteTarget - evictionBytesQueued.load(ordering: .relaxed)
            guard excess > 0 || excessBytes > 0 else { return }
            var candidates = agents.compactMap { agent in agent.idleSince.map { (agent, $0) } }
            candidates.sort { $0.1 < $1.1 }
            let now = tick.load(ordering: .relaxed) + 1
            var (queued, freed) = (0, 0)
            for (agent, _) in candidates where queued < excess || freed < excessBytes {
                let bytes = agent.residentBytes
                evictionsQueued.add(1, ordering: .relaxed)
                evictionBytesQueued.add(bytes, ordering: .relaxed)
                let reason = queued < excess ? "max_resident" : "max_resident_bytes"
                let taken = agent.enqueueIfIdle(since: now) { [weak self] agent in
                    guard let self else { return }
                    evictionsQueued.subtract(1, ordering: .relaxed)
                    evictionBytesQueued.subtract(bytes, ordering: .relaxed)
                    agent.retire(from: self, reason: reason)
                }
                if taken {
                    queued += 1
                    freed += bytes
                } else {
                    evictionsQueued.subtract(1, ordering: .relaxed)
                    evictionBytesQueued.subtract(bytes, ordering: .relaxed)
                }
            }
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
            // Whoever waits for a job (a reload's trial restore, a state request) is answered
            // too: the agent may never run it (its handler may be stuck).
            agent.abandonJobs()
            for message in agent.takeQueued() where message.kind == .request {
                context.outbox.answer(requestID: message.messageID.string, error: reason)
                answered += 1
            }
        }
        return answered
    }

    /// Destroys every agent's plugin instance and its handle (the runtime has stopped),
    /// except those of `sparing`, whose handlers are still running (never destroyed under
    /// a running handler).
    func destroyAgents(sparing: [AgentInstance] = []) {
        let all = routing.withLock { routing in
            defer { routing.agents.removeAll() }
            return Array(routing.agents.values)
        }
        for agent in all where !sparing.contains(where: { $0 === agent }) {
            agent.abandonJobs()
            agent.discardInstance()
            _ = handles.remove(agent.handle)
        }
    }
}
