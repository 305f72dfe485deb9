import CNATS
import Logging
import Synchronization

/// A connection to a NATS server (or a cluster of them) through nats.c: publish, subscribe,
/// request, and JetStream key-value buckets.
///
/// Connecting fails at once, with an error naming the address, when no server of the list is
/// there; once up, the connection reconnects by itself (``Options/Reconnect``) and says so in
/// ``events()``. Close it with ``close()`` (or ``drain(timeout:)``); the nats.c connection is
/// destroyed once, when the last reference to this object goes.
///
/// Threads: handlers of subscriptions run on nats.c's delivery threads, event streams are fed
/// from its callback thread; blocking calls (connect, flush, key-value) run on threads of this
/// connection, never on Swift's cooperative pool. Publishing does not block and may be called
/// from any thread, handlers included.
///
/// ```swift
/// let connection = try await NATSConnection.connect(try .init(servers: "nats://127.0.0.1:4222"), logger: logger)
/// let subscription = try connection.subscribe(to: "greetings") { message in
///     print(String(decoding: message.payload, as: UTF8.self))
/// }
/// try connection.publish("greetings", payload: Array("hello".utf8))
/// ```
public final class NATSConnection: Sendable {
    /// The servers, as given.
    public let servers: [String]
    /// The servers as one string, for messages.
    public let address: String
    let logger: Logger
    let handle: LibraryHandle
    let eventRelay: ConnectionEvents
    let blockingCalls: BlockingCallThreads
    /// How long each JetStream request (every key-value call) waits for the server: the
    /// connection's ``Options/jetStreamTimeout``.
    public let jetStreamTimeout: Duration
    private let callbackToken: UInt
    private let state = Mutex(State())

    private struct State {
        /// ``close()`` has begun.
        var closing = false
        /// ``close()`` has finished; those who called it again wait here for the first.
        var closed = false
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// The live subscriptions (their nats.c objects), each destroyed once: by whoever takes
        /// it out of here.
        var subscriptions: [UInt64: LibraryHandle] = [:]
        var nextSubscriptionID: UInt64 = 0
        /// The key-value watches, which close stops (each removes itself when it stops).
        var watches: [ObjectIdentifier: KeyValueWatch] = [:]
        /// The JetStream context, made on first use, destroyed with the connection.
        var jetStream: LibraryHandle?
        /// The inbox that request replies arrive on, made on first use.
        var requests: RequestInbox?
    }

    private init(
        options: Options, handle: LibraryHandle, events: ConnectionEvents, callbackToken: UInt,
        blockingCalls: BlockingCallThreads, logger: Logger
    ) {
        servers = options.servers
        address = events.address
        self.handle = handle
        self.eventRelay = events
        self.callbackToken = callbackToken
        self.blockingCalls = blockingCalls
        self.logger = logger
        jetStreamTimeout = options.jetStreamTimeout
    }

    /// Connects to one of `options.servers`.
    ///
    /// - Throws: ``NATSError`` with ``NATSError/Code/connectionFailed`` naming the address when no
    ///   server answers (never waits for one to appear), or ``NATSError/Code/invalidArgument`` for
    ///   an option nats.c refuses (a TLS file it cannot read names the file).
    public static func connect(_ options: Options, logger: Logger) async throws -> NATSConnection {
        let address = options.servers.joined(separator: ", ")
        guard !options.servers.isEmpty else {
            throw NATSError(code: .invalidArgument, message: "no NATS server to connect to")
        }
        let events = ConnectionEvents(address: address, logger: logger)
        let token = ConnectionCallbacks.register(events)
        let blockingCalls = BlockingCallThreads(count: options.blockingCallThreads, name: "nats-calls")
        do {
            let handle = try await blockingCalls.run({ try openConnection(options, address: address, callbackToken: token) },
                                                     ifClosed: NATSError(code: .connectionClosed, message: "connect"))
            logger.info("NATS connected", metadata: ["nats.address": "\(address)"])
            return NATSConnection(
                options: options, handle: handle, events: events, callbackToken: token, blockingCalls: blockingCalls,
                logger: logger)
        } catch {
            ConnectionCallbacks.unregister(token)
            blockingCalls.shutDown()
            throw error
        }
    }

    /// Makes the nats.c options from `options` and connects (blocking: on a thread of ours).
    private static func openConnection(_ options: Options, address: String, callbackToken: UInt) throws -> LibraryHandle {
        LibraryErrors.clear()
        var natsOptions: OpaquePointer?
        try check(natsOptions_Create(&natsOptions), "create the NATS options", address: address)
        guard let natsOptions else { throw NATSError(code: .library, message: "create the NATS options") }
        defer { natsOptions_Destroy(natsOptions) }  // natsConnection_Connect keeps a copy

        func set(_ status: natsStatus, _ what: String) throws {
            try check(status, "set the NATS option \(what) for \(address)", address: address)
        }
        try withCStrings(options.servers) { servers in
            try set(natsOptions_SetServers(natsOptions, servers.baseAddress, Int32(servers.count)), "servers")
        }
        try set(natsOptions_SetNoRandomize(natsOptions, !options.randomizeServers), "no-randomize")
        try set(natsOptions_SetTimeout(natsOptions, options.connectTimeout.wholeMilliseconds), "connect timeout")
        if let name = options.name { try set(natsOptions_SetName(natsOptions, name), "name") }
        // A server that is not there at start-up is an error at once, not a wait.
        try set(natsOptions_SetRetryOnFailedConnect(natsOptions, false, nil, nil), "retry on failed connect")
        let reconnect = options.reconnect
        try set(natsOptions_SetAllowReconnect(natsOptions, reconnect.enabled), "allow reconnect")
        try set(natsOptions_SetMaxReconnect(natsOptions, Int32(clamping: reconnect.maxAttempts ?? -1)), "max reconnect")
        try set(natsOptions_SetReconnectWait(natsOptions, reconnect.wait.wholeMilliseconds), "reconnect wait")
        try set(natsOptions_SetReconnectJitter(natsOptions, reconnect.jitter.wholeMilliseconds, reconnect.jitterTLS.wholeMilliseconds),
                "reconnect jitter")
        try set(natsOptions_SetReconnectBufSize(natsOptions, Int32(clamping: reconnect.bufferSize)), "reconnect buffer size")
        try set(natsOptions_SetPingInterval(natsOptions, options.pingInterval.wholeMilliseconds), "ping interval")
        try set(natsOptions_SetMaxPingsOut(natsOptions, Int32(clamping: options.maxPingsOutstanding)), "max pings out")
        try set(natsOptions_SetSendAsap(natsOptions, options.sendImmediately), "send as soon as possible")
        try set(natsOptions_SetMaxPendingMsgs(natsOptions, Int32(clamping: options.maxPendingMessagesPerSubscription)),
                "max pending messages")
        if let threads = options.messageDeliveryThreads {
            try set(nats_SetMessageDeliveryPoolSize(Int32(clamping: max(1, threads))), "message delivery pool size")
            try set(natsOptions_UseGlobalMessageDelivery(natsOptions, true), "global message delivery")
        }
        if let tls = options.tls {
            try set(natsOptions_SetSecure(natsOptions, true), "secure")
            if let caFile = tls.caFile {
                try set(natsOptions_LoadCATrustedCertificates(natsOptions, caFile), "CA certificates (\(caFile))")
            }
            if tls.certificateFile != nil || tls.privateKeyFile != nil {
                guard let certificate = tls.certificateFile, let key = tls.privateKeyFile else {
                    throw NATSError(code: .invalidArgument,
                                    message: "TLS to \(address): a client certificate needs both its certificate and its private key file",
                                    address: address)
                }
                try set(natsOptions_LoadCertificatesChain(natsOptions, certificate, key),
                        "client certificate (\(certificate), key \(key))")
            }
            if let hostname = tls.expectedHostname {
                try set(natsOptions_SetExpectedHostname(natsOptions, hostname), "expected TLS hostname")
            }
        }
        if let token = options.token { try set(natsOptions_SetToken(natsOptions, token), "token") }
        if let credentials = options.credentialsFile {
            try set(natsOptions_SetUserCredentialsFromFiles(natsOptions, credentials, nil), "credentials file (\(credentials))")
        }
        try set(ConnectionCallbacks.install(on: natsOptions, token: callbackToken), "callbacks")

        LibraryErrors.clear()
        var connection: OpaquePointer?
        let status = natsConnection_Connect(&connection, natsOptions)
        guard status == NATS_OK, let connection else {
            var error = NATSError(status, "cannot connect to NATS at \(address)", code: .connectionFailed, address: address)
            if let credentials = options.credentialsFile, error.detail?.contains(credentials) != true,
               status == NATS_ERR || status == NATS_SYS_ERROR || status == NATS_NOT_FOUND {
                error.message += " (credentials file \(credentials))"
            }
            throw error
        }
        return LibraryHandle(connection)
    }

    deinit {
        // The last reference is gone, so no call can reach the nats.c connection any more: destroy
        // it, once. If close() did not run, close first, off this thread (it may be one of nats.c's,
        // and closing joins nats.c's threads and flushes for up to half a second).
        let (subscriptions, jetStream, wasClosed) = state.withLock { state in
            (Array(state.subscriptions.values), state.jetStream, state.closed)
        }
        let handle = handle, token = callbackToken, events = eventRelay, blockingCalls = blockingCalls
        let teardown: @Sendable () -> Void = {
            for subscription in subscriptions { natsSubscription_Unsubscribe(subscription.pointer) }
            natsConnection_Close(handle.pointer)
            for subscription in subscriptions { natsSubscription_Destroy(subscription.pointer) }
            if let jetStream { jsCtx_Destroy(jetStream.pointer) }
            natsConnection_Destroy(handle.pointer)
            ConnectionCallbacks.unregister(token)
            events.closed()
            blockingCalls.shutDown()
        }
        if wasClosed {
            teardown()
        } else {
            LibraryThread.start(name: "nats-teardown", teardown)
        }
    }

    // MARK: - State

    /// Every event from now on: disconnects, reconnects, asynchronous errors, and the close.
    /// Each call makes a new stream; it ends after ``Event/closed``.
    public func events() -> AsyncStream<Event> {
        eventRelay.stream()
    }

    /// The connection's state as nats.c sees it now.
    public var status: Status {
        if eventRelay.isClosed { return .closed }
        switch natsConnection_Status(handle.pointer) {
        case NATS_CONN_STATUS_CONNECTED: return .connected
        case NATS_CONN_STATUS_CONNECTING, NATS_CONN_STATUS_RECONNECTING: return .reconnecting
        case NATS_CONN_STATUS_DISCONNECTED: return .disconnected
        case NATS_CONN_STATUS_DRAINING_SUBS, NATS_CONN_STATUS_DRAINING_PUBS: return .draining
        default: return .closed
        }
    }

    public enum Status: Sendable, Equatable {
        case connected, disconnected, reconnecting, draining, closed
    }

    /// The URL of the server connected to now, if connected.
    public var connectedURL: String? {
        var url = [CChar](repeating: 0, count: 512)
        guard natsConnection_GetConnectedUrl(handle.pointer, &url, url.count) == NATS_OK, url[0] != 0 else { return nil }
        return String(decoding: url.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: - Publishing

    /// Publishes `payload` on `subject`.
    ///
    /// Does not wait for the network: the bytes go out with nats.c's next flush (at once, as a
    /// rule). While reconnecting, they are buffered up to ``Options/Reconnect/bufferSize``.
    /// - Parameters:
    ///   - replyTo: the subject the receivers should answer on.
    ///   - headers: sent as NATS headers (the server must support them, as NATS 2.2 and later do).
    /// - Throws: ``NATSError``: ``NATSError/Code/connectionClosed``,
    ///   ``NATSError/Code/reconnectBufferFull``, ``NATSError/Code/invalidArgument`` (subject),
    ///   ``NATSError/Code/payloadTooLarge``.
    public func publish(
        _ subject: String, payload: UnsafeRawBufferPointer, replyTo: String? = nil, headers: NATSHeaders = NATSHeaders()
    ) throws {
        guard payload.count <= Int32.max else {
            throw NATSError(code: .payloadTooLarge, message: "publish \(payload.count) bytes to \(subject) on \(address)",
                            address: address, subject: subject)
        }
        let length = Int32(payload.count)
        let status: natsStatus = subject.withCString { subjectText in
            withOptionalCString(replyTo) { replyText in
                if headers.isEmpty {
                    return replyText == nil
                        ? natsConnection_Publish(handle.pointer, subjectText, payload.baseAddress, length)
                        : natsConnection_PublishRequest(handle.pointer, subjectText, replyText, payload.baseAddress, length)
                }
                var message: OpaquePointer?
                var status = natsMsg_Create(&message, subjectText, replyText,
                                            payload.baseAddress?.assumingMemoryBound(to: CChar.self), length)
                guard status == NATS_OK, let message else { return status }
                defer { natsMsg_Destroy(message) }
                for field in headers where status == NATS_OK {
                    status = natsMsgHeader_Add(message, field.name, field.value)
                }
                return status == NATS_OK ? natsConnection_PublishMsg(handle.pointer, message) : status
            }
        }
        guard status == NATS_OK else {
            throw NATSError(status, "publish to \(subject) on \(address)", withDetail: false, address: address, subject: subject)
        }
    }

    /// Publishes `payload` on `subject`; see ``publish(_:payload:replyTo:headers:)``.
    public func publish(
        _ subject: String, payload: [UInt8], replyTo: String? = nil, headers: NATSHeaders = NATSHeaders()
    ) throws {
        try payload.withUnsafeBytes { try publish(subject, payload: $0, replyTo: replyTo, headers: headers) }
    }

    /// A subject no one else uses (`_INBOX.` and a unique id), for answers.
    public func newInbox() -> String {
        var inbox: UnsafeMutablePointer<CChar>?
        guard natsInbox_Create(&inbox) == NATS_OK, let inbox else {
            preconditionFailure("nats.c could not make an inbox name (out of memory)")
        }
        defer { natsInbox_Destroy(inbox) }
        return String(cString: inbox)
    }

    /// Waits until the server has received everything published so far (a ping and its pong).
    /// - Throws: ``NATSError/Code/timeout``, ``NATSError/Code/disconnected`` (while
    ///   reconnecting), ``NATSError/Code/connectionClosed``.
    public func flush(timeout: Duration = .seconds(5)) async throws {
        try await blockingCall { [handle, address] in
            let status = natsConnection_FlushTimeout(handle.pointer, max(1, timeout.wholeMilliseconds))
            try check(status, "flush to NATS at \(address)", address: address)
        }
    }

    // MARK: - Subscribing

    /// Subscribes to `subject` (NATS wildcards `*` and `>` allowed); `handler` runs for each
    /// message, one at a time per subscription, on a nats.c delivery thread.
    ///
    /// The handler must not block for long: with ``Options/messageDeliveryThreads`` set, other
    /// subscriptions wait behind it. It may publish and unsubscribe.
    /// - Parameter queueGroup: share the messages with the other subscribers of the same group:
    ///   each message goes to one of them.
    /// - Throws: ``NATSError``: ``NATSError/Code/invalidArgument`` (subject or group),
    ///   ``NATSError/Code/connectionClosed``.
    public func subscribe(
        to subject: String, queueGroup: String? = nil, _ handler: @escaping @Sendable (NATSMessage) -> Void
    ) throws -> NATSSubscription {
        let id: UInt64? = state.withLock { state in
            guard !state.closing else { return nil }
            state.nextSubscriptionID += 1
            return state.nextSubscriptionID
        }
        guard let id else {
            throw NATSError(code: .connectionClosed, message: "subscribe to \(subject) on \(address): the connection is closed",
                            address: address, subject: subject)
        }
        let delivery = MessageDelivery(handler)
        let closure = Unmanaged.passRetained(delivery).toOpaque()
        let onMessage: natsMsgHandler = { _, _, message, closure in
            guard let message, let closure else { return }
            let delivery = Unmanaged<MessageDelivery>.fromOpaque(closure).takeUnretainedValue()
            let copy = NATSMessage(copying: message)
            natsMsg_Destroy(message)
            delivery.handler(copy)
        }
        var subscription: OpaquePointer?
        let status = subject.withCString { subjectText in
            withOptionalCString(queueGroup) { group in
                group == nil
                    ? natsConnection_Subscribe(&subscription, handle.pointer, subjectText, onMessage, closure)
                    : natsConnection_QueueSubscribe(&subscription, handle.pointer, subjectText, group, onMessage, closure)
            }
        }
        guard status == NATS_OK, let subscription else {
            Unmanaged<MessageDelivery>.fromOpaque(closure).release()
            let what = queueGroup.map { "subscribe to \(subject) in queue group \($0)" } ?? "subscribe to \(subject)"
            throw NATSError(status, "\(what) on \(address)", withDetail: false, address: address, subject: subject)
        }
        let onComplete: natsOnCompleteCB = { closure in
            guard let closure else { return }
            Unmanaged<MessageDelivery>.fromOpaque(closure).takeRetainedValue().complete()
        }
        if natsSubscription_SetOnCompleteCB(subscription, onComplete, closure) != NATS_OK {
            // The subscription closed already (the connection closed at this very moment), so the
            // completion callback will never come, and a handler call may still be under way: the
            // reference nats.c holds is left to it rather than released under its feet.
            delivery.complete()
        }
        let libraryHandle = LibraryHandle(subscription)
        eventRelay.subscribed(libraryHandle, subject: subject)
        let kept = state.withLock { state in
            guard !state.closing else { return false }
            state.subscriptions[id] = libraryHandle
            return true
        }
        if !kept {
            // close() began meanwhile and did not see this one.
            eventRelay.unsubscribed(libraryHandle)
            natsSubscription_Unsubscribe(subscription)
            natsSubscription_Destroy(subscription)
            throw NATSError(code: .connectionClosed, message: "subscribe to \(subject) on \(address): the connection is closed",
                            address: address, subject: subject)
        }
        return NATSSubscription(subject: subject, queueGroup: queueGroup, id: id, connection: self, delivery: delivery)
    }

    func unsubscribe(_ id: UInt64) {
        guard let subscription = state.withLock({ $0.subscriptions.removeValue(forKey: id) }) else { return }
        eventRelay.unsubscribed(subscription)
        natsSubscription_Unsubscribe(subscription.pointer)
        natsSubscription_Destroy(subscription.pointer)
    }

    // MARK: - Requests

    /// Publishes a request on `subject` and waits for the first answer, without blocking a
    /// thread: answers to every request of this connection arrive on one wildcard subscription.
    ///
    /// - Throws: ``NATSError/Code/noResponders`` at once when nothing subscribes to `subject`,
    ///   ``NATSError/Code/timeout``, or the publish's errors; `CancellationError` if the task is
    ///   cancelled.
    public func request(
        _ subject: String, payload: [UInt8], headers: NATSHeaders = NATSHeaders(), timeout: Duration
    ) async throws -> NATSMessage {
        let inbox = try requestInbox()
        let (token, replySubject) = inbox.newReplySubject()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<NATSMessage, any Error>) in
                inbox.expect(token, subject: subject, timeout: timeout, continuation)
                do {
                    try publish(subject, payload: payload, replyTo: replySubject, headers: headers)
                } catch {
                    inbox.fail(token, with: error)
                }
            }
        } onCancel: {
            inbox.fail(token, with: CancellationError())
        }
    }

    private func requestInbox() throws -> RequestInbox {
        if let inbox = state.withLock({ $0.requests }) { return inbox }
        let candidate = RequestInbox(prefix: newInbox(), address: address)
        let subscription = try subscribe(to: "\(candidate.prefix).*") { [candidate] message in
            candidate.deliver(message)
        }
        let (inbox, extra) = state.withLock { state -> (RequestInbox, NATSSubscription?) in
            if let existing = state.requests { return (existing, subscription) }
            state.requests = candidate
            return (candidate, nil)
        }
        extra?.unsubscribe()  // another request made the inbox first
        return inbox
    }

    // MARK: - Closing

    /// Drains the connection, then closes it: the subscriptions stop receiving, the messages
    /// already received are handled, what was published is sent; then as ``close()``.
    /// - Throws: ``NATSError`` if nats.c refuses to drain (already closed); a drain that outlives
    ///   `timeout` is cut short and the connection closed all the same.
    public func drain(timeout: Duration = .seconds(30)) async throws {
        let status = natsConnection_DrainTimeout(handle.pointer, max(1, timeout.wholeMilliseconds))
        if status != NATS_OK {
            throw NATSError(status, "drain the NATS connection to \(address)", withDetail: false, address: address)
        }
        let events = eventRelay
        _ = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await events.waitUntilClosed(); return true }
            group.addTask { try? await Task.sleep(for: timeout + .seconds(1)); return false }
            let first = await group.next()
            group.cancelAll()
            return first
        }
        await close()
    }

    /// Closes the connection: stops the key-value watches, ends the subscriptions, answers the
    /// requests still waiting with ``NATSError/Code/connectionClosed``, sends what is buffered
    /// (for up to half a second), and closes. A subscription's handler may still be finishing a
    /// message when this returns; ``NATSSubscription/finished()`` waits for that. Idempotent: a
    /// second call waits for the first.
    public func close() async {
        let first = state.withLock { state -> Bool in
            guard !state.closing else { return false }
            state.closing = true
            return true
        }
        guard first else {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let closed = state.withLock { state in
                    if !state.closed { state.closeWaiters.append(continuation) }
                    return state.closed
                }
                if closed { continuation.resume() }
            }
            return
        }
        for watch in state.withLock({ Array($0.watches.values) }) {
            watch.stop()
            await watch.finished()
        }
        let subscriptions = state.withLock { state in
            defer { state.subscriptions = [:] }
            return Array(state.subscriptions.values)
        }
        for subscription in subscriptions { eventRelay.unsubscribed(subscription) }
        state.withLock { $0.requests }?.failAll(
            with: NATSError(code: .connectionClosed, message: "request to NATS at \(address): the connection closed", address: address))
        eventRelay.willClose()
        // nats.c's close flushes and joins its threads: a thread of its own, not the caller's.
        let handle = handle
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            LibraryThread.start(name: "nats-close") {
                // Unsubscribe first, destroy after the close: each subscription once (nats.c#924).
                for subscription in subscriptions { natsSubscription_Unsubscribe(subscription.pointer) }
                natsConnection_Close(handle.pointer)
                for subscription in subscriptions { natsSubscription_Destroy(subscription.pointer) }
                continuation.resume()
            }
        }
        // nats.c's closed callback may come later, or twice; the events say closed once.
        eventRelay.closed()
        blockingCalls.shutDown()
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - For the key-value types

    /// Runs a blocking nats.c call on a thread of this connection, with the thread's nats.c error
    /// detail cleared first.
    func blockingCall<Value: Sendable>(_ body: @escaping @Sendable () throws -> Value) async throws -> Value {
        try await blockingCalls.run(
            {
                LibraryErrors.clear()
                return try body()
            },
            ifClosed: NATSError(code: .connectionClosed, message: "the NATS connection to \(address) is closed", address: address))
    }

    /// The connection's JetStream context (made on first use). Call on a blocking-call thread.
    func jetStream() throws -> LibraryHandle {
        try state.withLock { state in
            if let jetStream = state.jetStream { return jetStream }
            var options = jsOptions()
            try check(jsOptions_Init(&options), "initialise the JetStream options", address: address)
            options.Wait = max(1, jetStreamTimeout.wholeMilliseconds)
            var context: OpaquePointer?
            try check(natsConnection_JetStream(&context, handle.pointer, &options), "open JetStream on \(address)", address: address)
            guard let context else { throw NATSError(code: .library, message: "open JetStream on \(address)", address: address) }
            state.jetStream = LibraryHandle(context)
            return state.jetStream!
        }
    }

    /// Registers a watch for ``close()`` to stop; false if the connection is closing.
    func register(_ watch: KeyValueWatch) -> Bool {
        state.withLock { state in
            guard !state.closing else { return false }
            state.watches[ObjectIdentifier(watch)] = watch
            return true
        }
    }

    func unregister(_ watch: KeyValueWatch) {
        _ = state.withLock { $0.watches.removeValue(forKey: ObjectIdentifier(watch)) }
    }
}

/// Throws a ``NATSError`` for `status` unless it is `NATS_OK`.
func check(
    _ status: natsStatus, _ message: @autoclosure () -> String, code: NATSError.Code? = nil, address: String? = nil,
    subject: String? = nil, bucket: String? = nil, key: String? = nil
) throws {
    guard status != NATS_OK else { return }
    throw NATSError(status, message(), code: code, address: address, subject: subject, bucket: bucket, key: key)
}

/// Runs `body` with `text` as a C string, or with nil.
func withOptionalCString<Result>(_ text: String?, _ body: (UnsafePointer<CChar>?) throws -> Result) rethrows -> Result {
    guard let text else { return try body(nil) }
    return try text.withCString { try body($0) }
}

/// Runs `body` with `texts` as an array of C strings that live for the call.
func withCStrings<Result>(
    _ texts: [String], _ body: (UnsafeMutableBufferPointer<UnsafePointer<CChar>?>) throws -> Result
) rethrows -> Result {
    let copies = texts.map { text -> UnsafeMutablePointer<CChar> in
        let utf8 = Array(text.utf8CString)
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
        copy.initialize(from: utf8, count: utf8.count)
        return copy
    }
    defer { for copy in copies { copy.deallocate() } }
    var pointers = copies.map { UnsafePointer<CChar>?($0) }
    return try pointers.withUnsafeMutableBufferPointer { try body($0) }
}
