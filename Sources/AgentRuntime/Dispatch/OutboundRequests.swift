import AgentCore
import AgentPluginABI
import Logging
import Synchronization

/// The RPCs this runtime's agents and plugins sent, waiting for their answers: each is
/// answered exactly once — by the host's response, by a timeout, or with an error when the
/// connection is lost or the runtime stops — and the plugin whose completion it calls stays
/// loaded until then.
final class OutboundRequests: Sendable {
    private struct Request: @unchecked Sendable {
        // @unchecked Sendable: `context` is the plugin's opaque pointer, handed back to its
        // completion as is and never dereferenced here.
        var callback: agentd_response_fn
        var context: UnsafeMutableRawPointer?
        var target: String
        /// How long it waits for its answer (the timeout when it was sent).
        var timeout: Duration = .zero
        /// The plugin the callback is in (kept loaded until it has been called).
        var plugin: LoadedPlugin?
    }

    private struct State: ~Copyable {
        var pending: [String: Request] = [:]
        var deadlines = DeadlineQueue<String>()
        var nextID: UInt64 = 1
        /// How long a request sent now waits for its answer (`[runtime] rpc_timeout`; SIGHUP
        /// may change it: requests already sent keep theirs).
        var timeout: Duration
    }

    private let outbox: Outbox
    private let retirement: PluginRetirement
    private let state: Mutex<State>

    init(outbox: Outbox, retirement: PluginRetirement, timeout: Duration) {
        self.outbox = outbox
        self.retirement = retirement
        state = Mutex(State(timeout: timeout))
    }

    /// How long a request sent from now on waits for its answer.
    var timeout: Duration {
        get { state.withLock { $0.timeout } }
        set { state.withLock { $0.timeout = newValue } }
    }

    /// Sends an RPC as `sender` (nil: no sending agent) and keeps `callback` for its answer.
    /// - Returns: AGENTD_OK when it is on its way (the callback will be called exactly once);
    ///   otherwise nothing was sent and the callback is never called.
    func send(sender: AgentID?, plugin: LoadedPlugin?, targetType: String, targetKey: String, messageType: String,
              contentType: String, payload: UnsafeRawBufferPointer, callback: agentd_response_fn,
              context: UnsafeMutableRawPointer?, trace: TraceContext? = nil) -> agentd_status {
        guard AgentID.isValidType(targetType) else { return AGENTD_INVALID_ARGUMENT }
        plugin?.activityDidStart()
        var request = Request(callback: callback, context: context, target: "\(targetType)/\(targetKey)", plugin: plugin)
        let now = ContinuousClock.now
        let id: String = state.withLock { state in
            request.timeout = state.timeout
            let deadline = now + state.timeout
            let id = String(state.nextID)
            state.nextID += 1
            state.pending[id] = request
            state.deadlines.schedule(id, at: deadline)
            return id
        }
        let bytes = OutboundCodec.request(
            id: id, senderType: sender?.type, senderKey: sender?.key, targetType: targetType,
            targetKey: targetKey, messageType: messageType, contentType: contentType, payload: payload, trace: trace)
        guard outbox.send(bytes) else {
            _ = take(id)
            if let plugin { retirement.activityDidEnd(plugin) }
            return AGENTD_UNAVAILABLE
        }
        return AGENTD_OK
    }

    /// Hands the host's response to the completion waiting for it.
    /// - Returns: false if no request waits for it (answered already, or timed out).
    @discardableResult
    func complete(_ message: IncomingMessage) -> Bool {
        guard let request = take(message.messageID.string) else { return false }
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
        if let plugin = request.plugin { retirement.activityDidEnd(plugin) }
        return true
    }

    /// Answers the requests past their deadline with AGENTD_TIMEOUT.
    func expire(now: ContinuousClock.Instant) {
        let expired: [Request] = state.withLock { state in
            state.deadlines.removeExpired(now: now).compactMap { state.pending.removeValue(forKey: $0) }
        }
        for request in expired {
            fail(request, status: AGENTD_TIMEOUT, reason: "No answer from \(request.target) within \(request.timeout).")
        }
    }

    /// Answers every waiting request with AGENTD_UNAVAILABLE and `reason` (the connection was
    /// lost: no answer can come on a new stream; or the runtime stops).
    func failAll(reason: String) {
        let all: [Request] = state.withLock { state in
            _ = state.deadlines.removeAll()
            defer { state.pending.removeAll() }
            return Array(state.pending.values)
        }
        for request in all { fail(request, status: AGENTD_UNAVAILABLE, reason: reason) }
    }

    private func take(_ id: String) -> Request? {
        state.withLock { state in
            state.deadlines.cancel(id)
            return state.pending.removeValue(forKey: id)
        }
    }

    private func fail(_ request: Request, status: agentd_status, reason: String) {
        var text = reason
        text.withUTF8 { utf8 in
            utf8.withMemoryRebound(to: CChar.self) { chars in
                var response = agentd_response()
                response.size = UInt32(MemoryLayout<agentd_response>.size)
                response.status = status
                response.error = agentd_str(data: chars.baseAddress, length: chars.count)
                request.callback(request.context, &response)
            }
        }
        if let plugin = request.plugin { retirement.activityDidEnd(plugin) }
    }
}
