import AgentCore
import AgentPluginABI
import GRPCTransport
import DequeModule
#if canImport(Glibc)
import Glibc
#endif

/// One agent (agent type + key) served by this runtime: its mailbox, its plugin instance, and
/// the state that keeps its handlers one at a time.
///
/// Its address is the `agentd_agent_ref *` the plugin receives. An agent outlives plugin
/// versions: on a reload it moves to the new version of its type between two messages (with
/// its state, where the plugin offers snapshot/restore), and the messages waiting in its
/// mailbox are delivered by the new version. When its type goes away, what waits is answered
/// with an error.
final class AgentInstance: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is guarded by `lock`; the plugin instance
    // pointer is only passed to plugin code by the one worker running this agent.
    enum State {
        /// Nothing to do.
        case idle
        /// In the worker pool's queue.
        case scheduled
        /// A worker is in one of its handlers.
        case running
        /// A handler returned PENDING; the next message waits for that call's completion.
        case waiting(UInt64)
    }

    let id: AgentID
    unowned let core: RuntimeCore
    private let typeText: UnsafeMutableBufferPointer<CChar>
    private let keyText: UnsafeMutableBufferPointer<CChar>

    let lock = Lock()
    private var mailbox = Deque<IncomingMessage>()
    private var state = State.idle
    /// The version of the agent type serving this agent now (nil: the type was removed).
    private var currentType: PluginAgentType?
    /// The version whose create() made `instance` (nil: none made yet).
    private var instanceType: PluginAgentType?
    private var instance: UnsafeMutableRawPointer?
    /// Snapshot bytes from the previous version, restored into the next instance created.
    private var carriedState: [UInt8]?

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    init(id: AgentID, type: PluginAgentType, core: RuntimeCore) {
        self.id = id
        self.currentType = type
        self.core = core
        typeText = Self.copy(id.type)
        keyText = Self.copy(id.key)
    }

    deinit {
        typeText.deallocate()
        keyText.deallocate()
    }

    private static func copy(_ text: String) -> UnsafeMutableBufferPointer<CChar> {
        let bytes = Array(text.utf8CString)
        let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: bytes.count)
        _ = buffer.initialize(from: bytes)
        return buffer
    }

    var typeView: agentd_str { agentd_str(data: UnsafePointer(typeText.baseAddress), length: typeText.count - 1) }
    var keyView: agentd_str { agentd_str(data: UnsafePointer(keyText.baseAddress), length: keyText.count - 1) }

    /// The version serving this agent now.
    var type: PluginAgentType? { lock.withLock { currentType } }

    /// Queues a message; schedules the agent if it was idle. Returns false — and queues
    /// nothing — when `limit` messages wait already (the agent is slower than its traffic).
    func deliver(_ message: IncomingMessage, limit: Int) -> Bool {
        let (accepted, schedule): (Bool, Bool) = lock.withLock {
            guard mailbox.count < limit else { return (false, false) }
            mailbox.append(message)
            if case .idle = state {
                state = .scheduled
                return (true, true)
            }
            return (true, false)
        }
        if schedule { core.workers.schedule(self) }
        return accepted
    }

    /// Nothing runs, waits or is queued for this agent.
    var isIdle: Bool {
        lock.withLock {
            if case .idle = state { return mailbox.isEmpty }
            return false
        }
    }

    /// Removes and returns the queued messages (shutdown).
    func takeQueued() -> [IncomingMessage] {
        lock.withLock {
            defer { mailbox.removeAll() }
            return Array(mailbox)
        }
    }

    /// Moves the agent to another version of its type (nil: the type is gone). Takes effect
    /// between two messages: a handler running now finishes on the version it started on.
    func retarget(to type: PluginAgentType?) {
        let schedule: Bool = lock.withLock {
            currentType = type
            if case .idle = state {
                state = .scheduled
                return true
            }
            return false
        }
        if schedule { core.workers.schedule(self) }
    }

    /// Whether the plugin instance belongs to a version other than the current one.
    private var needsMigrationLocked: Bool {
        instanceType != nil && instanceType !== currentType
    }

    /// Runs the next message's handler (on a worker thread, which owns the agent meanwhile).
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
            let step: Step = lock.withLock {
                if needsMigrationLocked { return .migrate }
                guard let message = mailbox.popFirst() else {
                    state = .idle
                    return .idle
                }
                state = .running
                return .handle(message, currentType)
            }
            switch step {
            case .migrate: migrateIfNeeded()
            case .idle: return
            case .handle(let message, let type): next = (message, type)
            }
        }
        guard let (message, type) = next else { return }
        var pendingCall: HandlerCall?
        if let type {
            pendingCall = core.handle(message, for: self, type: type)
        } else {
            core.refuseForRemovedType(message, for: self)
        }
        let reschedule: Bool = lock.withLock {
            if let pendingCall, !pendingCall.completed {
                state = .waiting(pendingCall.id)
                return false
            }
            let more = !mailbox.isEmpty || needsMigrationLocked
            state = more ? .scheduled : .idle
            return more
        }
        if reschedule { core.workers.schedule(self) }
    }

    /// A pending call finished (from any thread): the agent takes its next message.
    func callDidComplete(_ call: HandlerCall) {
        let resume: Bool = lock.withLock {
            call.completed = true
            guard case .waiting(let id) = state, id == call.id else { return false }
            if mailbox.isEmpty && !needsMigrationLocked {
                state = .idle
                return false
            }
            state = .scheduled
            return true
        }
        if resume { core.workers.schedule(self) }
    }

    /// Moves the plugin instance off a version that no longer serves this agent: snapshot
    /// (if the new version can restore), destroy. The next message creates the new instance.
    private func migrateIfNeeded() {
        let (old, target, made) = lock.withLock { () -> (PluginAgentType?, PluginAgentType?, UnsafeMutableRawPointer?) in
            guard needsMigrationLocked else { return (nil, nil, nil) }
            defer {
                instanceType = nil
                instance = nil
            }
            return (instanceType, currentType, instance)
        }
        guard let old else { return }
        var snapshot: [UInt8]?
        if let target, target.descriptor.pointee.restore != nil, let take = old.descriptor.pointee.snapshot {
            var bytes: [UInt8] = []
            let status = withUnsafeMutablePointer(to: &bytes) { sink in
                take(made, snapshotWriter, UnsafeMutableRawPointer(sink))
            }
            if status == AGENTD_OK {
                snapshot = bytes
            } else {
                core.logger.warning("snapshot failed; the agent starts afresh on the new version", metadata: [
                    "agent.id": "\(id)", "plugin": "\(old.plugin.name)", "status": "\(StatusText.name(status))",
                ])
            }
        }
        if let destroy = old.descriptor.pointee.destroy { destroy(made) }
        old.plugin.instanceDidEnd()
        lock.withLock { carriedState = snapshot }
        core.retireUnusedPlugins()
    }

    /// The plugin instance for `type`, created (and restored) on first use. Returns a reason
    /// if create failed. Called only by the worker running this agent.
    func pluginInstance(for type: PluginAgentType) -> (instance: UnsafeMutableRawPointer?, failure: String?) {
        let (existing, made, carried) = lock.withLock { (instanceType, instance, carriedState) }
        if existing === type { return (made, nil) }
        var created: UnsafeMutableRawPointer?
        if let create = type.descriptor.pointee.create {
            let status = create(
                PluginReferences.opaque(for: type.plugin), type.descriptor, opaque, keyView, &created)
            guard status == AGENTD_OK else {
                return (nil, "creating agent \(id) failed with \(StatusText.name(status))")
            }
        }
        type.plugin.instanceDidStart()
        if let carried, let restore = type.descriptor.pointee.restore {
            let status = carried.withUnsafeBufferPointer {
                restore(created, agentd_bytes(data: $0.baseAddress, length: $0.count))
            }
            if status != AGENTD_OK {
                core.logger.warning("restoring the agent's state failed; it starts afresh", metadata: [
                    "agent.id": "\(id)", "plugin": "\(type.plugin.name)", "status": "\(StatusText.name(status))",
                ])
            } else {
                core.logger.debug("agent state carried to the new version", metadata: [
                    "agent.id": "\(id)", "plugin.version": "\(type.plugin.version)", "state.bytes": "\(carried.count)",
                ])
            }
        }
        lock.withLock {
            instanceType = type
            instance = created
            carriedState = nil
        }
        return (created, nil)
    }

    /// Destroys the plugin instance (shutdown).
    func destroyInstance() {
        let (type, made) = lock.withLock { () -> (PluginAgentType?, UnsafeMutableRawPointer?) in
            defer {
                instanceType = nil
                instance = nil
            }
            return (instanceType, instance)
        }
        guard let type else { return }
        if let destroy = type.descriptor.pointee.destroy { destroy(made) }
        type.plugin.instanceDidEnd()
    }
}

/// Appends a snapshot's bytes to the `[UInt8]` the sink points at.
private let snapshotWriter: agentd_write_fn = { sink, bytes in
    guard let sink, let data = bytes.data, bytes.length > 0 else { return }
    sink.assumingMemoryBound(to: [UInt8].self).pointee.append(contentsOf: UnsafeBufferPointer(start: data, count: bytes.length))
}

/// One message being handled: the `agentd_call *` token's target.
final class HandlerCall: @unchecked Sendable {
    // @unchecked Sendable: `completed` is guarded by the agent's lock; the rest is immutable.
    let id: UInt64
    let agent: AgentInstance
    /// The plugin whose handler the call belongs to (kept loaded until the call is answered).
    let plugin: LoadedPlugin
    let isRPC: Bool
    /// RPCs: the request id to answer (as the host gave it).
    let requestID: String
    let messageType: String
    var completed = false

    init(id: UInt64, agent: AgentInstance, plugin: LoadedPlugin, isRPC: Bool, requestID: String, messageType: String) {
        self.id = id
        self.agent = agent
        self.plugin = plugin
        self.isRPC = isRPC
        self.requestID = requestID
        self.messageType = messageType
    }

    var token: OpaquePointer { OpaquePointer(bitPattern: UInt(id))! }
}

/// Names of `agentd_status` values, for messages.
enum StatusText {
    static func name(_ status: agentd_status) -> String {
        switch status {
        case AGENTD_OK: return "AGENTD_OK"
        case AGENTD_PENDING: return "AGENTD_PENDING"
        case AGENTD_INVALID_ARGUMENT: return "AGENTD_INVALID_ARGUMENT"
        case AGENTD_UNKNOWN_MESSAGE_TYPE: return "AGENTD_UNKNOWN_MESSAGE_TYPE"
        case AGENTD_NOT_FOUND: return "AGENTD_NOT_FOUND"
        case AGENTD_UNAVAILABLE: return "AGENTD_UNAVAILABLE"
        case AGENTD_TIMEOUT: return "AGENTD_TIMEOUT"
        case AGENTD_FAILED: return "AGENTD_FAILED"
        case AGENTD_MISUSE: return "AGENTD_MISUSE"
        default: return "status \(status.rawValue)"
        }
    }
}
