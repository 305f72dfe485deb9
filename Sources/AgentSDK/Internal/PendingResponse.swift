import AgentPluginABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An RPC answer, copied out of the runtime's borrowed `agentd_response`.
struct RPCResponse: Sendable {
    var status: UInt32
    var error: String
    var messageType = ""
    var contentType = ""
    var payload = Data()

    init(status: agentd_status, error: String) {
        self.status = status.rawValue
        self.error = error
    }

    init(_ response: agentd_response) {
        status = response.status.rawValue
        error = String(response.error)
        messageType = String(response.message_type)
        contentType = String(response.content_type)
        payload = Data(response.payload)
    }
}

/// A `send` waiting for its completion: the `context` handed to `host->send`, retained until
/// the runtime calls back (exactly once).
final class PendingResponse: Sendable {
    private let continuation: CheckedContinuation<RPCResponse, Never>

    init(_ continuation: CheckedContinuation<RPCResponse, Never>) {
        self.continuation = continuation
    }

    /// The `agentd_response_fn`: copies the answer and resumes the waiting task (which decodes
    /// it on its own thread, so the runtime's thread returns at once).
    static func complete(_ context: UnsafeMutableRawPointer?, _ response: UnsafePointer<agentd_response>?) {
        guard let context else { return }
        let pending = Unmanaged<PendingResponse>.fromOpaque(context).takeRetainedValue()
        guard let response else {
            pending.continuation.resume(returning: RPCResponse(status: AGENTD_FAILED, error: "the runtime answered with no response"))
            return
        }
        let minimum = MemoryLayout<agentd_response>.offset(of: \agentd_response.payload)! + MemoryLayout<agentd_bytes>.size
        guard response.pointee.size >= minimum else {
            pending.continuation.resume(returning: RPCResponse(status: AGENTD_FAILED, error: "the runtime's response is too small"))
            return
        }
        pending.continuation.resume(returning: RPCResponse(response.pointee))
    }
}
