import CGRPC

/// A gRPC server on the C core: listens on one address and hands each incoming call to the
/// handler its ``CallRouter`` picks.
///
/// ```swift
/// let server = try Server(configuration: .init(address: "127.0.0.1:0"), router: MyRouter())
/// print("listening on port \(server.port)")
/// ...
/// await server.shutdown(gracePeriod: .seconds(5))
/// ```
public final class Server: CallOwner, @unchecked Sendable {
    // @unchecked Sendable: `server` is created in init and destroyed once in `shutdown` after
    // every call and accept slot has ended; `isShuttingDown` and `destroyed` are guarded by `lock`.

    public struct Configuration: Sendable {
        /// `HOST:PORT`; port 0 picks a free port (read it back from ``Server/port``).
        public var address: String
        public var credentials: ServerCredentials
        /// Messages larger than this are refused by the C core (`RESOURCE_EXHAUSTED`).
        public var maxReceiveMessageBytes: Int
        public var maxSendMessageBytes: Int
        /// How many completion queues (each with a poller thread) serve calls.
        public var pollerThreads: Int
        /// How many incoming calls each queue is ready to accept at once.
        public var acceptsPerQueue: Int
        /// Server-initiated keepalive pings (nil: the C core's default).
        public var keepaliveInterval: Duration?
        /// Charged with every call's waiting messages (nil: none is).
        public var sendBudget: SendBudget?
        /// A unix socket path the server listens on too, with the same credentials (nil: none):
        /// cheaper than loopback TCP for a client on the same machine (a cross-process ping-pong
        /// p50 39 µs against 54: `transport-bench --unix`).
        public var unixSocket: String?

        public init(
            address: String,
            credentials: ServerCredentials = .insecure,
            maxReceiveMessageBytes: Int = 4 * 1024 * 1024,
            maxSendMessageBytes: Int = Int(Int32.max),
            pollerThreads: Int = 2,
            acceptsPerQueue: Int = 16,
            keepaliveInterval: Duration? = nil,
            sendBudget: SendBudget? = nil,
            unixSocket: String? = nil
        ) {
            self.sendBudget = sendBudget
            self.unixSocket = unixSocket
            self.address = address
            self.credentials = credentials
            self.maxReceiveMessageBytes = maxReceiveMessageBytes
            self.maxSendMessageBytes = maxSendMessageBytes
            self.pollerThreads = pollerThreads
            self.acceptsPerQueue = acceptsPerQueue
            self.keepaliveInterval = keepaliveInterval
        }
    }

    public let configuration: Configuration
    /// The port the server listens on (the one picked, when the address asked for port 0).
    public let port: Int

    let server: OpaquePointer
    private let queues: CompletionQueueGroup
    /// The queues were made by this server (and are shut down with it).
    private let ownsQueues: Bool
    private let router: any CallRouter
    private let live = LiveCounter()
    private let lock = Lock()
    private var isShuttingDown = false
    private var destroyed = false

    /// Creates the server, listens and starts accepting calls.
    ///
    /// - Parameter queues: the completion queues its calls use; by default the server creates
    ///   ``Configuration/pollerThreads`` queues, each with a poller thread, and shuts them down
    ///   with itself. Given queues (for example an owner-polled group a process shares with its
    ///   channels, so that one set of threads serves all its gRPC traffic) stay up after
    ///   ``shutdown(gracePeriod:)``; they must be polled until then.
    /// - Throws: ``TransportError`` with code ``TransportError/Code/bindFailed`` naming the
    ///   address when it cannot listen there.
    public init(configuration: Configuration, router: any CallRouter, queues: CompletionQueueGroup? = nil) throws {
        GRPCLibrary.initialize()
        self.configuration = configuration
        self.router = router
        var arguments = ChannelArguments()
        arguments.set("grpc.max_receive_message_length", configuration.maxReceiveMessageBytes)
        arguments.set("grpc.max_send_message_length", configuration.maxSendMessageBytes)
        if let keepalive = configuration.keepaliveInterval {
            arguments.set("grpc.keepalive_time_ms", Int(keepalive.components.seconds * 1000))
            arguments.set("grpc.keepalive_permit_without_calls", 1)
        }
        // Without this the C core sets SO_REUSEPORT, and a second server on a taken port
        // would silently share it instead of failing.
        arguments.set("grpc.so_reuseport", 0)
        // Allow clients' keepalive pings every 10 s without a GOAWAY (the default is 5 min).
        arguments.set("grpc.http2.min_ping_interval_without_data_ms", 10_000)
        let server = arguments.withCArguments { grpc_server_create($0, nil)! }
        let ownsQueues = queues == nil
        let queues = queues ?? CompletionQueueGroup(count: configuration.pollerThreads, name: "grpc-server")
        for queue in queues.queues {
            grpc_server_register_completion_queue(server, queue.queue, nil)
        }
        let credentials = configuration.credentials.makeCCredentials()
        let port = grpc_server_add_http2_port(server, configuration.address, credentials)
        let unixBound = configuration.unixSocket.map { grpc_server_add_http2_port(server, "unix:\($0)", credentials) > 0 } ?? true
        grpc_server_credentials_release(credentials)
        guard unixBound else {
            grpc_server_destroy(server)
            if ownsQueues { queues.shutdown() }
            throw TransportError(code: .bindFailed, message: "cannot listen on the unix socket \(configuration.unixSocket ?? "")")
        }
        guard port > 0 else {
            grpc_server_destroy(server)
            if ownsQueues { queues.shutdown() }
            let message = configuration.credentials.isTLS
                ? "cannot listen on \(configuration.address) with \(configuration.credentials) (address in use, not a HOST:PORT this machine has, or a certificate chain, private key or client CA the TLS library refuses)"
                : "cannot listen on \(configuration.address) (address in use, or not a HOST:PORT this machine has)"
            throw TransportError(code: .bindFailed, message: message)
        }
        self.server = server
        self.queues = queues
        self.ownsQueues = ownsQueues
        self.port = Int(port)
        grpc_server_start(server)
        for queue in queues.queues {
            for _ in 0..<max(1, configuration.acceptsPerQueue) {
                AcceptSlot(server: self, queue: queue).request()
            }
        }
    }

    /// Stops accepting calls, lets calls in progress run for `gracePeriod`, cancels the rest,
    /// waits for every call to end and releases the server and its poller threads.
    public func shutdown(gracePeriod: Duration = .zero) async {
        let first = lock.withLock {
            defer { isShuttingDown = true }
            return !isShuttingDown
        }
        guard first else {
            await live.waitUntilZero()
            return
        }
        live.increment()  // the shutdown notification
        let notification = ShutdownNotification { [live] in live.decrement() }
        grpc_server_shutdown_and_notify(server, queues.queues[0].queue, notification.retainedTag(0))
        if gracePeriod > .zero {
            _ = await live.waitUntilZero(timeout: gracePeriod)
        }
        grpc_server_cancel_all_calls(server)
        await live.waitUntilZero()
        lock.withLock { destroyed = true }
        grpc_server_destroy(server)
        if ownsQueues { queues.shutdown() }
    }

    // MARK: CallOwner

    func callDidEnd(_ call: Call) { live.decrement() }

    // MARK: Accepting calls

    var shuttingDown: Bool { lock.withLock { isShuttingDown } }

    fileprivate func accepted(_ slot: AcceptSlot, call: OpaquePointer) {
        let details = slot.details
        let method = String(slice: &details.pointee.method)
        let authority = String(slice: &details.pointee.host)
        let remaining = cgrpc_ms_until(details.pointee.deadline)
        let metadata = Metadata(copying: slot.requestMetadata)
        live.increment()
        let serverCall = ServerCall(
            call: call, queue: slot.queue, owner: self, method: method, authority: authority,
            metadata: metadata, deadlineMilliseconds: remaining == Int64.max ? nil : remaining,
            sendBudget: configuration.sendBudget)
        if shuttingDown {
            serverCall.start(handler: nil, refusal: Status(.unavailable, "the server is shutting down"))
            return
        }
        let handler = router.handler(for: serverCall)
        serverCall.start(handler: handler, refusal: Status(.unimplemented, "unknown method \(method)"))
    }

    fileprivate func slotDidStart() { live.increment() }
    fileprivate func slotDidEnd() { live.decrement() }
}

/// A pending `grpc_server_request_call`: the out-parameters it fills and the queue it binds
/// the call to. Re-armed after each call until the server shuts down.
private final class AcceptSlot: CompletionTarget, @unchecked Sendable {
    // @unchecked Sendable: the out-parameters are written by the C core before the completion
    // and read only by the completion, on the queue's poller thread; one request at a time.
    let server: Server
    let queue: CompletionQueue
    let callPointer = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)
    let details = UnsafeMutablePointer<grpc_call_details>.allocate(capacity: 1)
    let requestMetadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)

    init(server: Server, queue: CompletionQueue) {
        self.server = server
        self.queue = queue
        callPointer.initialize(to: nil)
        details.initialize(to: grpc_call_details())
        requestMetadata.initialize(to: grpc_metadata_array())
        grpc_call_details_init(details)
        grpc_metadata_array_init(requestMetadata)
        super.init()
        server.slotDidStart()
    }

    deinit {
        grpc_call_details_destroy(details)
        grpc_metadata_array_destroy(requestMetadata)
        callPointer.deallocate()
        details.deallocate()
        requestMetadata.deallocate()
    }

    /// Asks the C core for the next call; ends the slot if the server is shutting down.
    func request() {
        guard !server.shuttingDown else {
            server.slotDidEnd()
            return
        }
        let tag = retainedTag(0)
        let result = grpc_server_request_call(
            server.server, callPointer, details, requestMetadata, queue.queue, queue.queue, tag)
        if result != GRPC_CALL_OK {
            releaseTag(tag)
            server.slotDidEnd()
        }
    }

    override func complete(operation: Int, success: Bool) {
        guard success, let call = callPointer.pointee else {
            server.slotDidEnd()
            return
        }
        server.accepted(self, call: call)
        callPointer.pointee = nil
        grpc_call_details_destroy(details)
        grpc_metadata_array_destroy(requestMetadata)
        grpc_call_details_init(details)
        grpc_metadata_array_init(requestMetadata)
        request()
    }
}

/// The completion of `grpc_server_shutdown_and_notify`.
private final class ShutdownNotification: CompletionTarget, @unchecked Sendable {
    // @unchecked Sendable: `action` is immutable.
    private let action: @Sendable () -> Void
    init(_ action: @escaping @Sendable () -> Void) { self.action = action }
    override func complete(operation: Int, success: Bool) { action() }
}
