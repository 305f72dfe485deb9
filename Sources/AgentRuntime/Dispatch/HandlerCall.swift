import AgentPluginABI
import Synchronization

/// One message being handled: what an `agentd_call *` names, from the handler's start until
/// the message is answered (`reply`, `fail`, the handler's return status, or a timeout).
final class HandlerCall: Sendable {
    let agent: AgentInstance
    /// The plugin whose handler the call belongs to (kept loaded until the call is answered).
    let plugin: LoadedPlugin
    let isRPC: Bool
    /// RPCs: the request id to answer (as the host gave it).
    let requestID: String
    let messageType: String
    /// The agent is checkpointed once the call is answered (its type keeps state in a store).
    let checkpoints: Bool
    /// The RPC's answer waits for that checkpoint.
    var holdsAnswer: Bool { checkpoints && isRPC }
    /// Answered. Read and written only inside the agent's critical section, which orders it
    /// with the agent's state (an atomic only because the agent's lock is not this object's).
    let completed = Atomic<Bool>(false)
    /// Left pending, so it has a deadline to cancel when answered.
    let timed = Atomic<Bool>(false)
    /// Answered with an error while its handler was still running past the handler timeout
    /// (``HandlerInvoker/expireRunning(_:after:)``): when the handler returns, nothing else
    /// answers it, and the plugin's activity ends then.
    let expiredWhileRunning = Atomic<Bool>(false)
    private let handleBits: UInt

    init(handle: OpaquePointer, agent: AgentInstance, plugin: LoadedPlugin, isRPC: Bool, requestID: String,
         messageType: String, checkpoints: Bool) {
        handleBits = UInt(bitPattern: Int(bitPattern: handle))
        self.agent = agent
        self.plugin = plugin
        self.isRPC = isRPC
        self.requestID = requestID
        self.messageType = messageType
        self.checkpoints = checkpoints
    }

    /// The `agentd_call *` the handler receives.
    var handle: OpaquePointer { OpaquePointer(bitPattern: handleBits)! }
    /// The handle as a number (the key of its deadline).
    var key: UInt { handleBits }
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
