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
/// Its address is the `agentd_agent_ref *` the plugin receives; instances live as long as
/// their plugin is loaded.
final class AgentInstance: @unchecked Sendable {
    // @unchecked Sendable: `mailbox`, `state`, `instance` and `created` are guarded by `lock`
    // (the plugin instance pointer is only passed to the plugin by the one thread running
    // this agent); the rest is immutable.
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
    let type: PluginAgentType
    unowned let core: RuntimeCore
    private let typeText: UnsafeMutableBufferPointer<CChar>
    private let keyText: UnsafeMutableBufferPointer<CChar>

    let lock = Lock()
    private var mailbox = Deque<IncomingMessage>()
    private var state = State.idle
    private var instance: UnsafeMutableRawPointer?
    private var created = false

    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    init(id: AgentID, type: PluginAgentType, core: RuntimeCore) {
        self.id = id
        self.type = type
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

    /// Queues a message; schedules the agent if it was idle.
    func deliver(_ message: IncomingMessage) {
        let schedule: Bool = lock.withLock {
            mailbox.append(message)
            if case .idle = state {
                state = .scheduled
                return true
            }
            return false
        }
        if schedule { core.workers.schedule(self) }
    }

    /// Runs the next message's handler (on a worker thread).
    func runNext() {
        let next: IncomingMessage? = lock.withLock {
            guard let message = mailbox.popFirst() else {
                state = .idle
                return nil
            }
            state = .running
            return message
        }
        guard let message = next else { return }
        let pendingCall = core.handle(message, for: self)
        lock.withLock {
            if let pendingCall, !pendingCall.completed {
                state = .waiting(pendingCall.id)
                return
            }
            state = mailbox.isEmpty ? .idle : .scheduled
        }
        if case .scheduled = lock.withLock({ state }) { core.workers.schedule(self) }
    }

    /// A pending call finished (from any thread): the agent takes its next message.
    func callDidComplete(_ call: HandlerCall) {
        let resume: Bool = lock.withLock {
            call.completed = true
            guard case .waiting(let id) = state, id == call.id else { return false }
            if mailbox.isEmpty {
                state = .idle
                return false
            }
            state = .scheduled
            return true
        }
        if resume { core.workers.schedule(self) }
    }

    /// The plugin instance, created on first use. Returns nil and a reason if create failed.
    /// Called only by the thread running this agent.
    func pluginInstance() -> (instance: UnsafeMutableRawPointer?, failure: String?) {
        let (isCreated, current) = lock.withLock { (created, instance) }
        if isCreated { return (current, nil) }
        var made: UnsafeMutableRawPointer?
        if let create = type.descriptor.pointee.create {
            let status = create(
                PluginReferences.opaque(for: type.plugin), type.descriptor, opaque, keyView, &made)
            guard status == AGENTD_OK else {
                return (nil, "creating agent \(id) failed with \(StatusText.name(status))")
            }
        }
        lock.withLock {
            instance = made
            created = true
        }
        return (made, nil)
    }

    /// Destroys the plugin instance (unload).
    func destroyInstance() {
        let (wasCreated, current) = lock.withLock { () -> (Bool, UnsafeMutableRawPointer?) in
            defer {
                created = false
                instance = nil
            }
            return (created, instance)
        }
        if wasCreated, let destroy = type.descriptor.pointee.destroy { destroy(current) }
    }
}

/// One message being handled: the `agentd_call *` token's target.
final class HandlerCall: @unchecked Sendable {
    // @unchecked Sendable: `completed` is guarded by the agent's lock; the rest is immutable.
    let id: UInt64
    let agent: AgentInstance
    let isRPC: Bool
    /// RPCs: the request id to answer (as the host gave it).
    let requestID: String
    let messageType: String
    var completed = false

    init(id: UInt64, agent: AgentInstance, isRPC: Bool, requestID: String, messageType: String) {
        self.id = id
        self.agent = agent
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
