import CGRPC

/// Receives the events of one client-side streaming call, on the call's poller thread.
///
/// Callbacks for one call never overlap and come in order: every message, then exactly one
/// ``call(_:didFinishWith:trailers:)``. They must not block.
public protocol ClientCallHandler: AnyObject, Sendable {
    /// A message arrived from the server.
    func call(_ call: ClientCall, didReceive message: MessageBuffer)
    /// The call is over, with the server's status (or the C core's, when the connection
    /// failed, the deadline passed or the call was cancelled).
    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata)
}

/// The client side of one streaming call.
public final class ClientCall: Call, @unchecked Sendable {
    // @unchecked Sendable: the status out-parameters are written by the C core before the
    // status completion and read only by it; `finalStatus` and `handler` are guarded by `lock`.

    public let requestMetadata: Metadata
    /// Released once the call has ended, so that a handler holding its call forms no cycle.
    private var handler: (any ClientCallHandler)?
    private let waitForReady: Bool
    private let initialMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let trailingMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let statusCode = UnsafeMutablePointer<grpc_status_code>.allocate(capacity: 1)
    private let statusDetails = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)
    private let errorString = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 1)
    private var finalStatus = Status(.unknown, "the call has not finished")
    private var finalTrailers = Metadata()

    init(call: OpaquePointer, queue: CompletionQueue, owner: any CallOwner, method: String,
         metadata: Metadata, waitForReady: Bool, handler: any ClientCallHandler) {
        self.requestMetadata = metadata
        self.handler = handler
        self.waitForReady = waitForReady
        initialMetadata.initialize(to: grpc_metadata_array())
        trailingMetadata.initialize(to: grpc_metadata_array())
        grpc_metadata_array_init(initialMetadata)
        grpc_metadata_array_init(trailingMetadata)
        statusCode.initialize(to: GRPC_STATUS_UNKNOWN)
        statusDetails.initialize(to: grpc_empty_slice())
        errorString.initialize(to: nil)
        super.init(call: call, queue: queue, owner: owner, method: method)
    }

    deinit {
        grpc_metadata_array_destroy(initialMetadata)
        grpc_metadata_array_destroy(trailingMetadata)
        grpc_slice_unref(statusDetails.pointee)
        if let error = errorString.pointee { cgrpc_free(UnsafeMutableRawPointer(mutating: error)) }
        initialMetadata.deallocate()
        trailingMetadata.deallocate()
        statusCode.deallocate()
        statusDetails.deallocate()
        errorString.deallocate()
    }

    /// Sends the request metadata and starts listening for the server's messages and status.
    /// Returns false if the C core refused to start the call.
    func start() -> Bool {
        let started = lock.withLock {
            closeOps[0] = grpc_op()
            closeOps[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT
            closeOps[0].data.recv_status_on_client.trailing_metadata = trailingMetadata
            closeOps[0].data.recv_status_on_client.status = statusCode
            closeOps[0].data.recv_status_on_client.status_details = statusDetails
            closeOps[0].data.recv_status_on_client.error_string = errorString
            guard startBatchLocked(closeOps, count: 1, operation: Operation.close) else { return false }
            startReceivingLocked(initialMetadata: initialMetadata)
            return true
        }
        guard started else { return false }
        // Sent at once, so the server sees the call even before the first message.
        return enqueue(.initialMetadata)
    }

    override func initialMetadataToSend() -> Metadata { requestMetadata }

    override func sendInitialMetadataFlags() -> UInt32 {
        waitForReady ? UInt32(GRPC_INITIAL_METADATA_WAIT_FOR_READY) : 0
    }

    /// Tells the server this client will send no more messages (after those queued).
    @discardableResult
    public func halfClose() -> Bool {
        enqueue(.halfClose)
    }

    /// The call's status once it is over.
    public var status: Status? { lock.withLock { isOver ? finalStatus : nil } }

    override func didReceive(_ message: MessageBuffer) {
        lock.withLock { handler }?.call(self, didReceive: message)
    }

    override func closeDidComplete(success: Bool) {
        let code = StatusCode(rawValue: Int(statusCode.pointee.rawValue))
        var message = String(slice: statusDetails)
        if message.isEmpty, code != .ok, let error = errorString.pointee {
            message = String(cString: error)
        }
        let trailers = Metadata(copying: trailingMetadata)
        lock.withLock {
            finalStatus = Status(code, message)
            finalTrailers = trailers
        }
    }

    override func didEnd() {
        let (status, trailers, handler) = lock.withLock { (finalStatus, finalTrailers, self.handler) }
        handler?.call(self, didFinishWith: status, trailers: trailers)
        lock.withLock { self.handler = nil }
    }
}
