import AgentCore
import AgentPluginABI
import DequeModule
import Synchronization

/// The plugin's own object for one agent: whatever its `create` stored, never dereferenced by
/// the runtime.
struct PluginInstance: @unchecked Sendable {
    // @unchecked Sendable: an opaque pointer the runtime only hands back to the plugin, and
    // only from the one worker running the agent (the header's one-handler-at-a-time promise).
    var pointer: UnsafeMutableRawPointer?
}

/// One agent (agent type + key) served by this runtime: its mailbox, its plugin instance, and
/// the state that keeps its handlers one at a time.
///
/// An agent outlives plugin versions: on a reload it moves to the new version of its type
/// between two messages (with its state, where the plugin offers snapshot/restore), and the
/// messages waiting in its mailbox are delivered by the new version. When its type goes away,
/// what waits is answered with an error.
final class AgentInstance: Schedulable {
    enum Phase {
        /// Nothing to do.
        case idle
        /// In the worker pool's queue.
        case scheduled
        /// A worker is in one of its handlers.
        case running
        /// A handler returned PENDING; the next message waits for that call's answer.
        case waiting(UInt)
    }

    private struct State: ~Copyable {
        var mailbox = Deque<IncomingMessage>()
        var phase = Phase.idle
        /// The version of the agent type serving this agent now (nil: the type was removed).
        var currentType: PluginAgentType?
        /// The version whose create() made `instance` (nil: none made yet).
        var instanceType: PluginAgentType?
        var instance = PluginInstance()
        /// Snapshot bytes from the previous version, restored into the next instance created.
        var carriedState: [UInt8]?

        /// Whether the plugin instance belongs to a version other than the current one.
        var needsMigration: Bool {
            guard let instanceType else { return false }
            return !instanceType.isSameVersion(as: currentType)
        }
    }

    let id: AgentID
    let context: DispatchContext
    private let handleBits: UInt
    private let typeText: CString
    private let keyText: CString
    private let state: Mutex<State>
    /// The plugin said (`state_changed`) that the message being handled changed the state.
    private let changed = Atomic<Bool>(false)

    init(handle: OpaquePointer, id: AgentID, type: PluginAgentType, context: DispatchContext) {
        handleBits = UInt(bitPattern: Int(bitPattern: handle))
        self.id = id
        self.context = context
        typeText = CString(id.type)
        keyText = CString(id.key)
        state = Mutex(State(currentType: type))
    }

    /// The `agentd_agent_ref *` the plugin receives.
    var handle: OpaquePointer { OpaquePointer(bitPattern: handleBits)! }
    var typeView: agentd_str { typeText.view }
    var keyView: agentd_str { keyText.view }

    /// The version serving this agent now.
    var type: PluginAgentType? { state.withLock { $0.currentType } }

    /// `state_changed` from the plugin (any thread).
    func stateDidChange() {
        changed.store(true, ordering: .relaxed)
        let running = state.withLock { $0.instanceType ?? $0.currentType }
        running?.declaration.reportsStateChanges.store(true, ordering: .relaxed)
    }

    // MARK: Mailbox (any thread)

    /// Queues a message; schedules the agent if it was idle. Returns false — and queues
    /// nothing — when `limit` messages wait already (the agent is slower than its traffic).
    func deliver(_ message: IncomingMessage, limit: Int) -> Bool {
        let (accepted, schedule): (Bool, Bool) = state.withLock { state in
            guard state.mailbox.count < limit else { return (false, false) }
            state.mailbox.append(message)
            guard case .idle = state.phase else { return (true, false) }
            state.phase = .scheduled
            return (true, true)
        }
        if schedule { context.workers.schedule(self) }
        return accepted
    }

    /// Nothing runs, waits or is queued for this agent.
    var isIdle: Bool {
        state.withLock { state in
            if case .idle = state.phase { return state.mailbox.isEmpty }
            return false
        }
    }

    /// Removes and returns the queued messages (shutdown).
    func takeQueued() -> [IncomingMessage] {
        state.withLock { state in
            defer { state.mailbox.removeAll() }
            return Array(state.mailbox)
        }
    }

    /// Moves the agent to another version of its type (nil: the type is gone). Takes effect
    /// between two messages: a handler running now finishes on the version it started on.
    func retarget(to type: PluginAgentType?) {
        let schedule: Bool = state.withLock { state in
            state.currentType = type
            guard case .idle = state.phase else { return false }
            state.phase = .scheduled
            return true
        }
        if schedule { context.workers.schedule(self) }
    }

    /// A pending call was answered (from any thread): the agent takes its next message.
    func callDidComplete(_ call: HandlerCall) {
        let resume: Bool = state.withLock { state in
            call.completed.store(true, ordering: .relaxed)
            guard case .waiting(let key) = state.phase, key == call.key else { return false }
            if state.mailbox.isEmpty && !state.needsMigration {
                state.phase = .idle
                return false
            }
            state.phase = .scheduled
            return true
        }
        if resume { context.workers.schedule(self) }
    }

    // MARK: Running (the worker thread that took the agent from the run queue)

    /// Handles the next message: migrates to a new version first if one is serving, then
    /// hands the message to the handler its type has for it.
    func runNext() {
        // The version is read in the same critical section that finds the instance on it: a
        // retarget landing between a migration check and the read would hand the message to a
        // new version while the old version's instance (and its state) is still in place.
        enum Step {
            case migrate
            case handle(IncomingMessage, PluginAgentType?)
            case idle
        }
        var next: (IncomingMessage, PluginAgentType?)?
        while next == nil {
            let step: Step = state.withLock { state in
                if state.needsMigration { return .migrate }
                guard let message = state.mailbox.popFirst() else {
                    state.phase = .idle
                    return .idle
                }
                state.phase = .running
                return .handle(message, state.currentType)
            }
            switch step {
            case .migrate: migrate()
            case .idle: return
            case .handle(let message, let type): next = (message, type)
            }
        }
        guard let (message, type) = next else { return }
        let pending = handle(message, on: type)
        let reschedule: Bool = state.withLock { state in
            if let pending, !pending.completed.load(ordering: .relaxed) {
                state.phase = .waiting(pending.key)
                return false
            }
            let more = !state.mailbox.isEmpty || state.needsMigration
            state.phase = more ? .scheduled : .idle
            return more
        }
        if reschedule { context.workers.schedule(self) }
    }

    /// Hands one message to the handler; returns the call if the handler left it pending.
    private func handle(_ message: IncomingMessage, on type: PluginAgentType?) -> HandlerCall? {
        let invoker = context.invoker
        guard let type else {
            invoker.refuseForRemovedType(message, agent: self)
            return nil
        }
        guard let handler = type.handler(for: message.messageType.string) else {
            invoker.refuseUnhandled(message, agent: self, type: type)
            return nil
        }
        switch pluginInstance(for: type) {
        case .failure(let failure):
            invoker.refuse(message, agent: self, type: type, creationFailure: failure.reason)
            return nil
        case .success(let instance):
            return invoker.invoke(handler, instance: instance, message: message, agent: self, type: type)
        }
    }

    private struct CreationFailure: Error { var reason: String }

    /// The plugin instance for `type`, created (and restored) on first use.
    private func pluginInstance(for type: PluginAgentType) -> Result<PluginInstance, CreationFailure> {
        let (existing, made, carried) = state.withLock { ($0.instanceType, $0.instance, $0.carriedState) }
        if type.isSameVersion(as: existing) { return .success(made) }
        var created: UnsafeMutableRawPointer?
        if let create = type.descriptor.pointee.create {
            let status = create(type.plugin.reference, type.descriptor, handle, keyView, &created)
            guard status == AGENTD_OK else {
                return .failure(CreationFailure(reason: "creating agent \(id) failed with \(StatusText.name(status))"))
            }
        }
        type.plugin.instanceDidStart()
        if let carried, let restore = type.descriptor.pointee.restore {
            let status = carried.withUnsafeBufferPointer {
                restore(created, agentd_bytes(data: $0.baseAddress, length: $0.count))
            }
            if status != AGENTD_OK {
                context.logger.warning("restoring the agent's state failed; it starts afresh", metadata: [
                    "agent.id": "\(id)", "plugin": "\(type.plugin.name)", "status": "\(StatusText.name(status))",
                ])
            } else {
                context.logger.debug("agent state carried to the new version", metadata: [
                    "agent.id": "\(id)", "plugin.version": "\(type.plugin.version)", "state.bytes": "\(carried.count)",
                ])
            }
        }
        let instance = PluginInstance(pointer: created)
        state.withLock { state in
            state.instanceType = type
            state.instance = instance
            state.carriedState = nil
        }
        return .success(instance)
    }

    /// Moves the plugin instance off a version that no longer serves this agent: snapshot
    /// (if the new version can restore), destroy. The next message creates the new instance.
    private func migrate() {
        let (old, target, made) = state.withLock { state -> (PluginAgentType?, PluginAgentType?, PluginInstance) in
            guard state.needsMigration else { return (nil, nil, PluginInstance()) }
            defer {
                state.instanceType = nil
                state.instance = PluginInstance()
            }
            return (state.instanceType, state.currentType, state.instance)
        }
        guard let old else { return }
        var snapshot: [UInt8]?
        if let target, target.descriptor.pointee.restore != nil, let take = old.descriptor.pointee.snapshot {
            var bytes: [UInt8] = []
            let status = withUnsafeMutablePointer(to: &bytes) { sink in
                take(made.pointer, snapshotWriter, UnsafeMutableRawPointer(sink))
            }
            if status == AGENTD_OK {
                snapshot = bytes
            } else {
                context.logger.warning("snapshot failed; the agent starts afresh on the new version", metadata: [
                    "agent.id": "\(id)", "plugin": "\(old.plugin.name)", "status": "\(StatusText.name(status))",
                ])
            }
        }
        if let destroy = old.descriptor.pointee.destroy { destroy(made.pointer) }
        state.withLock { $0.carriedState = snapshot }
        context.retirement.instanceDidEnd(old.plugin)
    }

    /// Destroys the plugin instance (shutdown).
    func destroyInstance() {
        let (type, made) = state.withLock { state -> (PluginAgentType?, PluginInstance) in
            defer {
                state.instanceType = nil
                state.instance = PluginInstance()
            }
            return (state.instanceType, state.instance)
        }
        guard let type else { return }
        if let destroy = type.descriptor.pointee.destroy { destroy(made.pointer) }
        context.retirement.instanceDidEnd(type.plugin)
    }
}

/// Appends a snapshot's bytes to the `[UInt8]` the sink points at.
private let snapshotWriter: agentd_write_fn = { sink, bytes in
    guard let sink, let data = bytes.data, bytes.length > 0 else { return }
    sink.assumingMemoryBound(to: [UInt8].self).pointee.append(contentsOf: UnsafeBufferPointer(start: data, count: bytes.length))
}
