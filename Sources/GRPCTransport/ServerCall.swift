import CGRPC

/// Receives the events of one server-side call, on the call's poller thread.
///
/// Callbacks for one call never overlap and come in order: messages, then (if the client
/// closes its side) ``callDidHalfClose(_:)``, then exactly one ``callDidEnd(_:cancelled:)``.
/// They must not block: hand slow work elsewhere and answer later with ``ServerCall/send(_:)``
/// or ``ServerCall/finish(_:trailers:)``, which are thread-safe.
public protocol ServerCallHandler: AnyObject, Sendable {
    /// A message arrived from the client.
    func call(_ call: ServerCall, didReceive message: MessageBuffer)
    /// The client will send no more messages.
    func callDidHalfClose(_ call: ServerCall)
    /// The call is over: its status was sent (`cancelled == false`), or it was cancelled,
    /// timed out or the client went away (`cancelled == true`).
    func callDidEnd(_ call: ServerCall, cancelled: Bool)
}

extension ServerCallHandler {
    public func callDidHalfClose(_ call: ServerCall) {}
    public func callDidEnd(_ call: ServerCall, cancelled: Bool) {}
}

/// Decides which handler serves an incoming call.
public protocol CallRouter: Sendable {
    /// Called on a poller thread for each new call. Return nil to refuse the method
    /// (the client gets `UNIMPLEMENTED`), or finish the call yourself and return nil.
    func handler(for call: ServerCall) -> (any ServerCallHandler)?
}

/// The server side of one call.
public final class ServerCall: Call, @unchecked Sendable {
    // @unchecked Sendable: `handler` is written once, before any batch starts, with `lock`
    // held, and read with `lock` held; the rest is immutable or guarded by ``Call``'s lock.

    /// The client's request metadata (`client-id` among them).
    public let metadata: Metadata
    /// The host the client addressed (the `:authority`).
    public let authority: String
    /// Milliseconds until the client's deadline when the call arrived (nil if none).
    public let deadlineMilliseconds: Int64?
    /// Who the client's certificate says it is, as mutual TLS verified it: its subject
    /// alternative names, or else its common name (for example `x509_common_name=worker-1`);
    /// nil when the client presented no certificate the server checked (plaintext, or TLS
    /// without a client certificate authority).
    public let peerCertificateIdentity: String?

    private var handler: (any ServerCallHandler)?
    private let cancelledFlag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

    init(call: OpaquePointer, queue: CompletionQueue, owner: any CallOwner, method: String,
         authority: String, metadata: Metadata, deadlineMilliseconds: Int64?, sendBudget: SendBudget? = nil) {
        self.metadata = metadata
        self.authority = authority
        self.deadlineMilliseconds = deadlineMilliseconds
        peerCertificateIdentity = Self.certificateIdentity(of: call)
        cancelledFlag.initialize(to: 0)
        super.init(call: call, queue: queue, owner: owner, method: method, sendBudget: sendBudget)
    }

    deinit { cancelledFlag.deallocate() }

    /// The authenticated peer identity of `call`'s auth context, if the peer has one.
    private static func certificateIdentity(of call: OpaquePointer) -> String? {
        guard let context = grpc_call_auth_context(call) else { return nil }
        defer { grpc_auth_context_release(context) }
        guard grpc_auth_context_peer_is_authenticated(context) != 0,
              let name = grpc_auth_context_peer_identity_property_name(context) else { return nil }
        var iterator = grpc_auth_context_peer_identity(context)
        var values: [String] = []
        while let property = grpc_auth_property_iterator_next(&iterator) {
            guard let value = property.pointee.value else { continue }
            values.append(String(decoding: UnsafeRawBufferPointer(start: value, count: property.pointee.value_length), as: UTF8.self))
        }
        guard !values.isEmpty else { return nil }
        return "\(String(cString: name))=\(values.sorted().joined(separator: ","))"
    }

    /// Ends the call with `status` (after every message queued before it).
    ///
    /// - Returns: false if the call was already over or finished.
    @discardableResult
    public func finish(_ status: Status = .ok, trailers: Metadata = Metadata()) -> Bool {
        enqueue(.status(status, trailers: trailers, message: nil))
    }

    /// Sends `message` and ends the call with `OK` in one batch (a unary response).
    @discardableResult
    public func respond(_ message: MessageBuffer, trailers: Metadata = Metadata()) -> Bool {
        enqueue(.status(.ok, trailers: trailers, message: message))
    }

    /// Starts serving the call with `handler`, or refuses it with `refusal` when nil.
    func start(handler: (any ServerCallHandler)?, refusal: Status) {
        lock.withLock {
            self.handler = handler
            closeOps[0] = grpc_op()
            closeOps[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER
            closeOps[0].data.recv_close_on_server.cancelled = cancelledFlag
            guard startBatchLocked(closeOps, count: 1, operation: Operation.close) else { return }
            if handler != nil { startReceivingLocked() }
        }
        if handler == nil { finish(refusal) }
    }

    private var currentHandler: (any ServerCallHandler)? { lock.withLock { handler } }

    override func didReceive(_ message: MessageBuffer) {
        currentHandler?.call(self, didReceive: message)
    }

    override func didReceiveEndOfStream() {
        currentHandler?.callDidHalfClose(self)
    }

    override func didEnd() {
        // The close completion (which wrote the flag) came before the end, on this thread.
        let handler = lock.withLock { self.handler }
        handler?.callDidEnd(self, cancelled: cancelledFlag.pointee != 0)
        lock.withLock { self.handler = nil }
    }
}
