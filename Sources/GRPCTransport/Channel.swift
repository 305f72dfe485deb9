import CGRPC

/// A client connection to one gRPC server (the C core's channel: it connects lazily and
/// reconnects by itself), on which streaming and unary calls start.
public final class Channel: CallOwner, @unchecked Sendable {
    // @unchecked Sendable: `channel` is created in init and destroyed once in `shutdown` after
    // every call on it has ended; `calls`, `isShutDown` are guarded by `lock`.

    public struct Configuration: Sendable {
        /// `HOST:PORT` (or any C-core target, such as `unix:/path`).
        public var target: String
        public var credentials: ChannelCredentials
        public var maxReceiveMessageBytes: Int
        public var maxSendMessageBytes: Int
        /// Client keepalive pings (nil: none), so a vanished server is noticed.
        public var keepaliveInterval: Duration?
        /// The longest wait between reconnection attempts.
        public var maxReconnectBackoff: Duration

        public init(
            target: String,
            credentials: ChannelCredentials = .insecure,
            maxReceiveMessageBytes: Int = 4 * 1024 * 1024,
            maxSendMessageBytes: Int = Int(Int32.max),
            keepaliveInterval: Duration? = nil,
            maxReconnectBackoff: Duration = .seconds(5)
        ) {
            self.target = target
            self.credentials = credentials
            self.maxReceiveMessageBytes = maxReceiveMessageBytes
            self.maxSendMessageBytes = maxSendMessageBytes
            self.keepaliveInterval = keepaliveInterval
            self.maxReconnectBackoff = maxReconnectBackoff
        }
    }

    public let configuration: Configuration
    let channel: OpaquePointer
    private let queues: CompletionQueueGroup
    private let ownsQueues: Bool
    private let live = LiveCounter()
    private let lock = Lock()
    private var calls: [ObjectIdentifier: Call] = [:]
    private var unaryCalls: [ObjectIdentifier: UnaryCall] = [:]
    private var isShutDown = false

    /// Creates the channel. It connects on the first call.
    ///
    /// - Parameter queues: the completion queues its calls use; by default the channel
    ///   creates one queue with its own poller thread and shuts it down with the channel.
    public init(configuration: Configuration, queues: CompletionQueueGroup? = nil) {
        GRPCLibrary.initialize()
        self.configuration = configuration
        var arguments = ChannelArguments()
        arguments.set("grpc.max_receive_message_length", configuration.maxReceiveMessageBytes)
        arguments.set("grpc.max_send_message_length", configuration.maxSendMessageBytes)
        arguments.set("grpc.max_reconnect_backoff_ms", Int(configuration.maxReconnectBackoff.components.seconds * 1000))
        // Retry a lost connection quickly. (Not grpc.min_reconnect_backoff_ms: in this C core it
        // is also the minimum connect timeout, and 100 ms fails first connections under load.)
        arguments.set("grpc.initial_reconnect_backoff_ms", 100)
        if let keepalive = configuration.keepaliveInterval {
            arguments.set("grpc.keepalive_time_ms", Int(keepalive.components.seconds * 1000))
            arguments.set("grpc.keepalive_timeout_ms", 10_000)
            arguments.set("grpc.keepalive_permit_without_calls", 1)
            arguments.set("grpc.http2.max_pings_without_data", 0)
        }
        // Each channel gets its own connection, even to the same target.
        arguments.set("grpc.use_local_subchannel_pool", 1)
        let credentials = configuration.credentials.makeCCredentials()
        channel = arguments.withCArguments { grpc_channel_create(configuration.target, credentials, $0)! }
        grpc_channel_credentials_release(credentials)
        if let queues {
            self.queues = queues
            ownsQueues = false
        } else {
            self.queues = CompletionQueueGroup(count: 1, name: "grpc-client")
            ownsQueues = true
        }
    }

    private func createCall(method: String, deadline: Deadline, queue: CompletionQueue) -> OpaquePointer? {
        let methodSlice = grpc_slice.copying(method)
        defer { grpc_slice_unref(methodSlice) }
        return grpc_channel_create_call(
            channel, nil, cgrpc_propagate_defaults(), queue.queue, methodSlice, nil,
            deadline.timespec, nil)
    }

    /// Starts a bidirectional streaming call; `handler` receives its messages and status.
    ///
    /// - Parameters:
    ///   - method: the full path, for example `/agents.AgentRpc/OpenChannel`.
    ///   - waitForReady: wait for the connection instead of failing with `UNAVAILABLE` when
    ///     the server cannot be reached yet.
    /// - Throws: ``TransportError`` with ``TransportError/Code/shutDown`` after ``shutdown()``.
    public func makeStreamingCall(
        method: String, metadata: Metadata = Metadata(), deadline: Deadline = .never,
        waitForReady: Bool = false, handler: any ClientCallHandler
    ) throws -> ClientCall {
        let queue = queues.nextQueue()
        let clientCall: ClientCall? = lock.withLock {
            guard !isShutDown, let raw = createCall(method: method, deadline: deadline, queue: queue) else {
                return nil
            }
            let call = ClientCall(
                call: raw, queue: queue, owner: self, method: method, metadata: metadata,
                waitForReady: waitForReady, handler: handler)
            calls[ObjectIdentifier(call)] = call
            live.increment()
            return call
        }
        guard let clientCall else {
            throw TransportError(code: .shutDown, message: "the channel to \(configuration.target) is shut down")
        }
        if !clientCall.start() {
            clientCall.cancel()
        }
        return clientCall
    }

    /// Sends one request and calls `completion` (on a poller thread) with the response or
    /// the failure.
    public func unary(
        method: String, request: MessageBuffer, metadata: Metadata = Metadata(),
        deadline: Deadline = .after(.seconds(30)), waitForReady: Bool = false,
        completion: @escaping @Sendable (Result<MessageBuffer, TransportError>) -> Void
    ) {
        let queue = queues.nextQueue()
        let unary: UnaryCall? = lock.withLock {
            guard !isShutDown, let raw = createCall(method: method, deadline: deadline, queue: queue) else {
                return nil
            }
            let unary = UnaryCall(call: raw, channel: self, completion: completion)
            unaryCalls[ObjectIdentifier(unary)] = unary
            live.increment()
            return unary
        }
        guard let unary else {
            completion(.failure(TransportError(code: .shutDown, message: "the channel to \(configuration.target) is shut down")))
            return
        }
        unary.start(request: request, metadata: metadata, waitForReady: waitForReady)
    }

    /// Sends one request and returns the response.
    ///
    /// - Throws: ``TransportError``; for a non-OK status its ``TransportError/status``.
    public func unary(
        method: String, request: MessageBuffer, metadata: Metadata = Metadata(),
        deadline: Deadline = .after(.seconds(30)), waitForReady: Bool = false
    ) async throws -> MessageBuffer {
        try await withCheckedThrowingContinuation { continuation in
            unary(method: method, request: request, metadata: metadata, deadline: deadline,
                  waitForReady: waitForReady) { continuation.resume(with: $0) }
        }
    }

    /// Cancels every call in progress, waits for them to end and releases the channel (and
    /// its poller thread, if it owns it).
    public func shutdown() async {
        let (first, streams, unaries) = lock.withLock {
            defer { isShutDown = true }
            return (!isShutDown, Array(calls.values), Array(unaryCalls.values))
        }
        for call in streams { call.cancel(Status(.cancelled, "the channel is shutting down")) }
        for call in unaries { call.cancel() }
        await live.waitUntilZero()
        guard first else { return }
        grpc_channel_destroy(channel)
        if ownsQueues { queues.shutdown() }
    }

    // MARK: CallOwner

    func callDidEnd(_ call: Call) {
        lock.withLock { _ = calls.removeValue(forKey: ObjectIdentifier(call)) }
        live.decrement()
    }

    fileprivate func unaryDidEnd(_ call: UnaryCall) {
        lock.withLock { _ = unaryCalls.removeValue(forKey: ObjectIdentifier(call)) }
        live.decrement()
    }
}

/// One unary call: a single batch carries the request out and the response and status back.
private final class UnaryCall: CompletionTarget, @unchecked Sendable {
    // @unchecked Sendable: the out-parameters are written by the C core before the completion
    // and read only by it; `done` is guarded by `lock`.
    private let call: OpaquePointer
    private let channel: Channel
    private let completion: @Sendable (Result<MessageBuffer, TransportError>) -> Void
    private let lock = Lock()
    private var done = false
    private let ops = UnsafeMutablePointer<grpc_op>.allocate(capacity: 6)
    private var requestMetadata = CMetadataArray(Metadata())
    private var requestBuffer: UnsafeMutablePointer<grpc_byte_buffer>?
    private let initialMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let trailingMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    private let response = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)
    private let statusCode = UnsafeMutablePointer<grpc_status_code>.allocate(capacity: 1)
    private let statusDetails = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)
    private let errorString = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 1)

    init(call: OpaquePointer, channel: Channel,
         completion: @escaping @Sendable (Result<MessageBuffer, TransportError>) -> Void) {
        self.call = call
        self.channel = channel
        self.completion = completion
        ops.initialize(repeating: grpc_op(), count: 6)
        initialMetadata.initialize(to: grpc_metadata_array())
        trailingMetadata.initialize(to: grpc_metadata_array())
        grpc_metadata_array_init(initialMetadata)
        grpc_metadata_array_init(trailingMetadata)
        response.initialize(to: nil)
        statusCode.initialize(to: GRPC_STATUS_UNKNOWN)
        statusDetails.initialize(to: grpc_empty_slice())
        errorString.initialize(to: nil)
    }

    deinit {
        requestMetadata.release()
        if let requestBuffer { grpc_byte_buffer_destroy(requestBuffer) }
        if let buffer = response.pointee { grpc_byte_buffer_destroy(buffer) }
        grpc_metadata_array_destroy(initialMetadata)
        grpc_metadata_array_destroy(trailingMetadata)
        grpc_slice_unref(statusDetails.pointee)
        if let error = errorString.pointee { cgrpc_free(UnsafeMutableRawPointer(mutating: error)) }
        ops.deallocate()
        initialMetadata.deallocate()
        trailingMetadata.deallocate()
        response.deallocate()
        statusCode.deallocate()
        statusDetails.deallocate()
        errorString.deallocate()
    }

    func start(request: MessageBuffer, metadata: Metadata, waitForReady: Bool) {
        requestMetadata = CMetadataArray(metadata)
        requestBuffer = request.makeSendBuffer()
        ops[0].op = GRPC_OP_SEND_INITIAL_METADATA
        ops[0].flags = waitForReady ? UInt32(GRPC_INITIAL_METADATA_WAIT_FOR_READY) : 0
        ops[0].data.send_initial_metadata.count = requestMetadata.count
        ops[0].data.send_initial_metadata.metadata = requestMetadata.pointer
        ops[1].op = GRPC_OP_SEND_MESSAGE
        ops[1].data.send_message.send_message = requestBuffer
        ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT
        ops[3].op = GRPC_OP_RECV_INITIAL_METADATA
        ops[3].data.recv_initial_metadata.recv_initial_metadata = initialMetadata
        ops[4].op = GRPC_OP_RECV_MESSAGE
        ops[4].data.recv_message.recv_message = response
        ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT
        ops[5].data.recv_status_on_client.trailing_metadata = trailingMetadata
        ops[5].data.recv_status_on_client.status = statusCode
        ops[5].data.recv_status_on_client.status_details = statusDetails
        ops[5].data.recv_status_on_client.error_string = errorString
        let tag = retainedTag(0)
        let result = lock.withLock { grpc_call_start_batch(call, ops, 6, tag, nil) }
        if result != GRPC_CALL_OK {
            releaseTag(tag)
            finish(.failure(TransportError(
                code: .invalidArgument,
                message: "cannot start \(String(cString: grpc_call_error_to_string(result)))")))
        }
    }

    func cancel() {
        lock.withLock {
            guard !done else { return }
            _ = grpc_call_cancel(call, nil)
        }
    }

    override func complete(operation: Int, success: Bool) {
        let code = StatusCode(rawValue: Int(statusCode.pointee.rawValue))
        var message = String(slice: statusDetails)
        if message.isEmpty, code != .ok, let error = errorString.pointee {
            message = String(cString: error)
        }
        let result: Result<MessageBuffer, TransportError>
        if code != .ok {
            result = .failure(.call(Status(code, message)))
        } else if let buffer = response.pointee {
            response.pointee = nil
            result = .success(MessageBuffer(taking: buffer))
        } else {
            result = .failure(.call(Status(.internal, "the server answered OK without a response message")))
        }
        finish(result)
    }

    private func finish(_ result: Result<MessageBuffer, TransportError>) {
        lock.withLock {
            done = true
            grpc_call_unref(call)
        }
        completion(result)
        channel.unaryDidEnd(self)
    }
}
