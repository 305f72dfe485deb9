import AgentCore
import AgentPluginABI
import CRuntimeSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRPCTransport
import Logging
import Synchronization

/// The dispatcher: takes decoded messages from the host connection to agents' mailboxes,
/// runs handlers on the worker pool, and carries what plugins publish, send and answer back
/// to the host.
final class RuntimeCore: @unchecked Sendable {
    // @unchecked Sendable: mutable state lives in `routing` and `outbound` (Mutex); the
    // rest is immutable or thread-safe (`WorkerPool`, `connection` is set once before traffic).

    struct Routing: ~Copyable {
        /// Agent types this runtime serves.
        var types: [String: PluginAgentType] = [:]
        /// Their subscriptions, to pick the local agent types an event reaches.
        var subscriptions = SubscriptionIndex()
        var instances: [AgentID: AgentInstance] = [:]
        /// Types that were served and are not any more (for clearer answers).
        var withdrawn: Set<String> = []
    }

    struct OutboundRequest: @unchecked Sendable {
        // @unchecked Sendable: `context` is the plugin's opaque pointer, handed back as is.
        var callback: agentd_response_fn
        var context: UnsafeMutableRawPointer?
        var deadline: ContinuousClock.Instant
        var target: String
        /// The plugin the callback is in (kept loaded until it has been called).
        var plugin: LoadedPlugin?
    }

    struct Outbound: ~Copyable {
        var pending: [String: OutboundRequest] = [:]
        var nextID: UInt64 = 1
    }

    let logger: Logger
    let workers: WorkerPool
    let rpcTimeout: Duration
    /// Messages that may wait for one agent.
    let mailboxLimit: Int
    /// How long a handler may leave a message pending before it is answered with an error.
    let handlerTimeout: Duration
    private let overloadRefusals = Atomic<Int>(0)
    let routing = Mutex(Routing())
    let outbound = Mutex(Outbound())
    private let connectionBox = Mutex<HostConnection?>(nil)

    init(workers: Int, rpcTimeout: Duration, mailboxLimit: Int = 10_000, handlerTimeout: Duration = .seconds(60),
         logger: Logger) {
        self.handlerTimeout = handlerTimeout
        self.logger = logger
        self.workers = WorkerPool(threads: workers)
        self.rpcTimeout = rpcTimeout
        self.mailboxLimit = mailboxLimit
        RuntimeCore.registerDefault(self)
    }

    var connection: HostConnection? {
        get { connectionBox.withLock { $0 } }
        set { connectionBox.withLock { $0 = newValue } }
    }

    // MARK: Serving agent types

    /// Changes which agent types (and versions) this runtime serves: `types` replace the
    /// served versions of the same names or add new names; `withdrawn` names stop being
    /// served. Existing agents move to the new version between two messages, or — for a
    /// withdrawn type — answer what reaches them with an error. (Registration with the host is
    /// the caller's business.)
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
            return routing.instances.values.filter { changed.contains($0.id.type) }.map { ($0, routing.types[$0.id.type]) }
        }
        for (agent, type) in retargets { agent.retarget(to: type) }
    }

    var servedTypes: [String] { routing.withLock { $0.types.keys.sorted() } }

    private func instance(type: PluginAgentType, key: String) -> AgentInstance {
        let id = AgentID(type: type.name, key: key)
        return routing.withLock { routing in
            if let existing = routing.instances[id] { return existing }
            let created = AgentInstance(id: id, type: type, core: self)
            routing.instances[id] = created
            AgentReferences.add(created)
            return created
        }
    }

    // MARK: Incoming (poller thread)

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
        case .response: complete(response: message)
        }
    }

    // MARK: Shutting down

    private let intakeOpen = Atomic<Bool>(true)
    private let refusedAtShutdown = Atomic<Int>(0)

    /// From now on, requests are answered with an error and events dropped (counted).
    func closeIntake() { intakeOpen.store(false, ordering: .releasing) }

    private func refuseWhileShuttingDown(_ message: IncomingMessage) {
        refusedAtShutdown.add(1, ordering: .relaxed)
        if message.kind == .request {
            answer(requestID: message.messageID.string,
                   error: "The runtime serving \(message.targetType.string)/\(message.targetKey.string) is shutting down.")
        }
    }

    /// Waits until no agent has work (running, pending or queued), or `deadline`. True if idle.
    func waitUntilIdle(deadline: ContinuousClock.Instant) async -> Bool {
        while ContinuousClock.now < deadline {
            let agents = routing.withLock { Array($0.instances.values) }
            if agents.allSatisfy(\.isIdle) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return routing.withLock { Array($0.instances.values) }.allSatisfy(\.isIdle)
    }

    /// Answers every pending call and every queued request with an error; returns how many
    /// of each.
    func abandonRemainingWork(reason: String) -> (pending: Int, queued: Int) {
        // Queued first: answering a pending call frees its agent, which would run the next.
        var queued = 0
        for agent in routing.withLock({ Array($0.instances.values) }) {
            for message in agent.takeQueued() where message.kind == .request {
                answer(requestID: message.messageID.string, error: reason)
                queued += 1
            }
        }
        var pending = 0
        for call in HandlerCalls.takeAll(where: { $0.agent.core === self }) {
            if call.isRPC { answer(requestID: call.requestID, error: reason) }
            call.agent.callDidComplete(call)
            pending += 1
        }
        return (pending, queued)
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
            let agent = instance(type: type, key: key)
            if !agent.deliver(message, limit: mailboxLimit) { refuseOverloaded(message, agent) }
        }
    }

    private func route(request message: IncomingMessage) {
        let typeName = message.targetType.string
        let (served, wasServed) = routing.withLock { ($0.types[typeName], $0.withdrawn.contains(typeName)) }
        guard let type = served else {
            let target = "\(typeName)/\(message.targetKey.string)"
            answer(requestID: message.messageID.string, error: wasServed
                ? "Agent type '\(typeName)' is no longer served: its plugin was removed from this runtime (request to \(target))."
                : "Agent type '\(typeName)' is not served by this runtime (request to \(target)).")
            return
        }
        let agent = instance(type: type, key: message.targetKey.string)
        if !agent.deliver(message, limit: mailboxLimit) { refuseOverloaded(message, agent) }
    }

    /// A full mailbox: the RPC is answered with an error, the event dropped — counted and
    /// logged (the first, then every 1,000th).
    private func refuseOverloaded(_ message: IncomingMessage, _ agent: AgentInstance) {
        let count = overloadRefusals.wrappingAdd(1, ordering: .relaxed).newValue
        if message.kind == .request {
            answer(requestID: message.messageID.string,
                   error: "Agent \(agent.id) is overloaded: \(mailboxLimit) messages are waiting for it; the request was not delivered.")
        }
        if count == 1 || count % 1000 == 0 {
            logger.warning("mailbox full: message refused", metadata: [
                "agent.id": "\(agent.id)", "mailbox.limit": "\(mailboxLimit)", "refused": "\(count)",
                "message.kind": "\(message.kind == .request ? "rpc" : "event")",
            ])
        }
    }

    private func complete(response message: IncomingMessage) {
        let id = message.messageID.string
        guard let request = outbound.withLock({ $0.pending.removeValue(forKey: id) }) else {
            logger.debug("response to no waiting request dropped", metadata: ["request.id": "\(id)"])
            return
        }
        var response = agentd_response()
        response.size = UInt32(MemoryLayout<agentd_response>.size)
        if message.error.isEmpty {
            response.status = AGENTD_OK
        } else {
            response.status = AGENTD_FAILED
            response.error = message.error
        }
        response.message_type = message.messageType
        response.content_type = message.contentType
        response.payload = message.payload
        withExtendedLifetime(message) { request.callback(request.context, &response) }
        request.plugin?.activityDidEnd()
        retireUnusedPlugins()
    }

    // MARK: Handling (worker thread)

    /// Runs the handler for `message` on `agent`. Returns the call if the handler left it
    /// pending.
    func handle(_ message: IncomingMessage, for agent: AgentInstance, type: PluginAgentType) -> HandlerCall? {
        let isRPC = message.kind == .request
        let messageType = message.messageType.string
        let requestID = isRPC ? message.messageID.string : ""
        guard let handler = type.handler(for: messageType) else {
            let handled = type.messageTypes.joined(separator: ", ")
            let reason = "Agent type '\(type.name)' has no handler for message type '\(messageType)' (it handles: \(handled.isEmpty ? "nothing" : handled))."
            if isRPC {
                answer(requestID: requestID, error: reason)
            } else {
                logger.debug("event without a handler dropped", metadata: ["agent.id": "\(agent.id)", "message.type": "\(messageType)"])
            }
            return nil
        }
        let (instance, failure) = agent.pluginInstance(for: type)
        if let failure {
            if isRPC { answer(requestID: requestID, error: failure) }
            logger.error("agent could not be created", metadata: [
                "agent.id": "\(agent.id)", "plugin": "\(type.plugin.name)", "error": "\(failure)",
            ])
            return nil
        }
        let plugin = type.plugin!
        plugin.activityDidStart()
        let call = HandlerCalls.open(agent: agent, plugin: plugin, isRPC: isRPC, requestID: requestID, messageType: messageType)
        var view = agentd_message()
        view.size = UInt32(MemoryLayout<agentd_message>.size)
        view.host = UnsafePointer(HostAPI.table)
        view.agent = agent.opaque
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
        view.call = call.token
        let status = withExtendedLifetime(message) { handler(instance, &view) }
        if status == AGENTD_PENDING {
            HandlerCalls.setDeadline(call.id, .now + handlerTimeout)
            return call
        }
        // Answered already (reply/fail during the handler), or answered now.
        guard HandlerCalls.take(call.id) != nil else { return nil }
        defer {
            plugin.activityDidEnd()
            // The last handler of a replaced version may be this one: it can go now.
            retireUnusedPlugins()
        }
        if isRPC {
            if status == AGENTD_OK {
                send(OutboundCodec.response(requestID: requestID, messageType: "", contentType: "application/json", payload: UnsafeRawBufferPointer(start: nil, count: 0)))
            } else {
                answer(requestID: requestID, error: "The handler for '\(messageType)' of agent \(agent.id) failed with \(StatusText.name(status)).")
            }
        } else if status != AGENTD_OK {
            logger.warning("event handler failed", metadata: [
                "agent.id": "\(agent.id)", "message.type": "\(messageType)", "status": "\(StatusText.name(status))",
            ])
        }
        return nil
    }

    // MARK: Completions (any thread)

    func reply(_ call: HandlerCall, messageType: agentd_str, contentType: agentd_str, payload: agentd_bytes) {
        if call.isRPC {
            send(OutboundCodec.response(
                requestID: call.requestID, messageType: messageType.string, contentType: contentType.string,
                payload: payload.buffer))
        }
        finish(call)
    }

    /// Answers the pending handler calls past their deadline with an error, and lets their
    /// agents go on. (The plugin is kept loaded: its code may still answer late, which is
    /// then refused harmlessly.)
    func expireHandlers(now: ContinuousClock.Instant) {
        // The table is the process's: answer each call through the runtime it belongs to.
        for call in HandlerCalls.takeExpired(now: now) {
            let core = call.agent.core
            let text = "The handler for '\(call.messageType)' of agent \(call.agent.id) did not finish within \(core.handlerTimeout)."
            if call.isRPC {
                core.answer(requestID: call.requestID, error: text)
            }
            core.logger.error("handler timed out", metadata: [
                "agent.id": "\(call.agent.id)", "plugin": "\(call.plugin.name)", "message.type": "\(call.messageType)",
                "timeout": "\(core.handlerTimeout)",
            ])
            call.agent.callDidComplete(call)
        }
    }

    /// A call is answered: the plugin has one thing less running, the agent may go on.
    private func finish(_ call: HandlerCall) {
        call.plugin.activityDidEnd()
        call.agent.callDidComplete(call)
        retireUnusedPlugins()
    }

    /// Answers a message whose agent type is gone (its plugin was removed).
    func refuseForRemovedType(_ message: IncomingMessage, for agent: AgentInstance) {
        if message.kind == .request {
            answer(requestID: message.messageID.string,
                   error: "Agent type '\(agent.id.type)' is no longer served: its plugin was removed from this runtime.")
        } else {
            logger.info("event for a removed agent type dropped", metadata: [
                "agent.id": "\(agent.id)", "message.type": "\(message.messageType.string)",
            ])
        }
    }

    // MARK: Retirement

    private let retiring = Mutex<[LoadedPlugin]>([])
    /// Whether `retiring` has anything (read on the per-message path without the lock).
    /// Sequentially consistent, like the plugins' activity counts: a thread ending the last
    /// activity either sees it set, or `retire` sees the plugin idle.
    private let hasRetiring = Atomic<Bool>(false)
    /// Unloads a retired plugin; set by the runtime.
    let unloadPlugin = Mutex<(@Sendable (LoadedPlugin) -> Void)?>(nil)

    /// Marks a plugin version as replaced or removed: it is unloaded once idle.
    func retire(_ plugin: LoadedPlugin) {
        retiring.withLock { list in
            list.append(plugin)
            hasRetiring.store(true, ordering: .sequentiallyConsistent)
        }
        retireUnusedPlugins()
    }

    /// Unloads the retired plugins nothing runs in or holds any more.
    func retireUnusedPlugins() {
        guard hasRetiring.load(ordering: .sequentiallyConsistent) else { return }
        let ready: [LoadedPlugin] = retiring.withLock { list in
            guard !list.isEmpty else { return [] }
            let idle = list.filter(\.isIdle)
            list.removeAll { plugin in idle.contains { $0 === plugin } }
            hasRetiring.store(!list.isEmpty, ordering: .sequentiallyConsistent)
            return idle
        }
        guard !ready.isEmpty, let unload = unloadPlugin.withLock({ $0 }) else { return }
        // Unloaded from a task of its own, never from the thread that made it idle: that
        // thread may be a plugin's own, still returning from a reply() into the plugin's code.
        Task.detached {
            for plugin in ready { unload(plugin) }
        }
    }

    func fail(_ call: HandlerCall, status: agentd_status, message: String) {
        let text = message.isEmpty ? "The handler for '\(call.messageType)' of agent \(call.agent.id) failed with \(StatusText.name(status))." : message
        if call.isRPC {
            answer(requestID: call.requestID, error: text)
        } else {
            logger.warning("event handler failed", metadata: [
                "agent.id": "\(call.agent.id)", "message.type": "\(call.messageType)", "error": "\(text)",
            ])
        }
        finish(call)
    }

    // MARK: Outgoing

    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        guard let connection else { return false }
        return connection.send(MessageBuffer(bytes))
    }

    func answer(requestID: String, error: String) {
        send(OutboundCodec.errorResponse(requestID: requestID, error: error))
    }

    func publish(from agent: AgentInstance?, topicType: String, topicSource: String, messageType: String,
                 contentType: String, payload: UnsafeRawBufferPointer) -> agentd_status {
        guard TopicID.isValidType(topicType) else { return AGENTD_INVALID_ARGUMENT }
        let bytes = OutboundCodec.event(
            id: OutboundCodec.newID(), topicType: topicType, topicSource: topicSource,
            senderType: agent?.id.type, senderKey: agent?.id.key, messageType: messageType,
            contentType: contentType, payload: payload)
        guard let connection else { return AGENTD_UNAVAILABLE }
        switch connection.send(MessageBuffer(bytes), kind: .event) {
        case .sent, .buffered: return AGENTD_OK
        case .refused, .full: return AGENTD_UNAVAILABLE
        }
    }

    func sendRequest(from agent: AgentInstance?, targetType: String, targetKey: String, messageType: String,
                     contentType: String, payload: UnsafeRawBufferPointer, callback: agentd_response_fn,
                     context: UnsafeMutableRawPointer?) -> agentd_status {
        guard AgentID.isValidType(targetType) else { return AGENTD_INVALID_ARGUMENT }
        let target = "\(targetType)/\(targetKey)"
        // The completion is plugin code: that plugin stays loaded until it has been called.
        let plugin = agent?.type?.plugin ?? pluginContaining(unsafeBitCast(callback, to: UnsafeRawPointer.self))
        plugin?.activityDidStart()
        let id: String = outbound.withLock { outbound in
            let id = String(outbound.nextID)
            outbound.nextID += 1
            outbound.pending[id] = OutboundRequest(
                callback: callback, context: context, deadline: .now + rpcTimeout, target: target, plugin: plugin)
            return id
        }
        let bytes = OutboundCodec.request(
            id: id, senderType: agent?.id.type, senderKey: agent?.id.key, targetType: targetType,
            targetKey: targetKey, messageType: messageType, contentType: contentType, payload: payload)
        guard send(bytes) else {
            _ = outbound.withLock { $0.pending.removeValue(forKey: id) }
            plugin?.activityDidEnd()
            return AGENTD_UNAVAILABLE
        }
        return AGENTD_OK
    }

    /// The loaded plugin whose image contains `address`.
    private func pluginContaining(_ address: UnsafeRawPointer) -> LoadedPlugin? {
        guard let base = agentd_image_base(address) else { return nil }
        let key = UInt(bitPattern: base)
        return routing.withLock { routing in
            routing.types.values.first { $0.plugin.imageBase.map { UInt(bitPattern: $0) } == key }?.plugin
        }
    }

    /// Fails outbound requests past their deadline (or all of them, at disconnect).
    func failOutbound(expiredBy now: ContinuousClock.Instant?, reason: String) {
        let expired: [OutboundRequest] = outbound.withLock { outbound in
            let ids = outbound.pending.filter { now == nil || $0.value.deadline <= now! }.map(\.key)
            return ids.compactMap { outbound.pending.removeValue(forKey: $0) }
        }
        for request in expired {
            var text = now == nil ? reason : "No answer from \(request.target) within \(rpcTimeout)."
            text.withUTF8 { utf8 in
                utf8.withMemoryRebound(to: CChar.self) { chars in
                    var response = agentd_response()
                    response.size = UInt32(MemoryLayout<agentd_response>.size)
                    response.status = now == nil ? AGENTD_UNAVAILABLE : AGENTD_TIMEOUT
                    response.error = agentd_str(data: chars.baseAddress, length: chars.count)
                    request.callback(request.context, &response)
                }
            }
            request.plugin?.activityDidEnd()
        }
        if !expired.isEmpty { retireUnusedPlugins() }
    }

    // MARK: The runtime plugins reach with a NULL agent

    private static let defaultCore = Mutex<RuntimeCore?>(nil)
    static func registerDefault(_ core: RuntimeCore) {
        defaultCore.withLock { if $0 == nil { $0 = core } }
    }
    static var `default`: RuntimeCore? { defaultCore.withLock { $0 } }
    func resignDefault() {
        RuntimeCore.defaultCore.withLock { if $0 === self { $0 = nil } }
    }
}

/// The open handler calls, by the id their `agentd_call *` token carries; a stale or
/// foreign token finds nothing instead of memory.
enum HandlerCalls {
    private struct Table: ~Copyable {
        var calls: [UInt64: HandlerCall] = [:]
        /// Deadlines of the calls left pending.
        var deadlines: [UInt64: ContinuousClock.Instant] = [:]
        var nextID: UInt64 = 1
    }
    private static let table = Mutex(Table())

    static func open(agent: AgentInstance, plugin: LoadedPlugin, isRPC: Bool, requestID: String, messageType: String) -> HandlerCall {
        table.withLock { table in
            let call = HandlerCall(id: table.nextID, agent: agent, plugin: plugin, isRPC: isRPC, requestID: requestID, messageType: messageType)
            table.nextID += 1
            table.calls[call.id] = call
            return call
        }
    }

    /// Removes and returns the call (nil if it was answered already or never existed).
    static func take(_ id: UInt64) -> HandlerCall? {
        table.withLock { table in
            table.deadlines[id] = nil
            return table.calls.removeValue(forKey: id)
        }
    }

    static func setDeadline(_ id: UInt64, _ deadline: ContinuousClock.Instant) {
        table.withLock { table in
            if table.calls[id] != nil { table.deadlines[id] = deadline }
        }
    }

    /// Removes and returns the open calls matching `predicate`.
    static func takeAll(where predicate: (HandlerCall) -> Bool) -> [HandlerCall] {
        table.withLock { table in
            let ids = table.calls.filter { predicate($0.value) }.map(\.key)
            return ids.compactMap { id in
                table.deadlines[id] = nil
                return table.calls.removeValue(forKey: id)
            }
        }
    }

    /// Removes and returns the pending calls whose deadline has passed.
    static func takeExpired(now: ContinuousClock.Instant) -> [HandlerCall] {
        table.withLock { table in
            guard !table.deadlines.isEmpty else { return [] }
            let expired = table.deadlines.filter { $0.value <= now }.map(\.key)
            return expired.compactMap { id in
                table.deadlines[id] = nil
                return table.calls.removeValue(forKey: id)
            }
        }
    }

    static func take(token: OpaquePointer?) -> HandlerCall? {
        guard let token else { return nil }
        return take(UInt64(UInt(bitPattern: Int(bitPattern: token))))
    }
}

/// The live agent references handed to plugins, so that a stale or foreign pointer is
/// refused instead of dereferenced.
enum AgentReferences {
    private static let live = Mutex<Set<UInt>>([])

    private static func key(_ agent: AgentInstance) -> UInt {
        UInt(bitPattern: Unmanaged.passUnretained(agent).toOpaque())
    }

    static func add(_ agent: AgentInstance) {
        let key = key(agent)
        live.withLock { _ = $0.insert(key) }
    }

    static func remove(_ agent: AgentInstance) {
        let key = key(agent)
        live.withLock { _ = $0.remove(key) }
    }

    static func resolve(_ pointer: OpaquePointer?) -> AgentInstance? {
        guard let pointer else { return nil }
        let key = UInt(bitPattern: Int(bitPattern: pointer))
        guard live.withLock({ $0.contains(key) }) else { return nil }
        return Unmanaged<AgentInstance>.fromOpaque(UnsafeRawPointer(pointer)).takeUnretainedValue()
    }
}
