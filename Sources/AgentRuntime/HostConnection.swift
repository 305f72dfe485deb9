import AgentCore
import AgentWire
import DequeModule
import Foundation
import GRPCTransport
import Logging

/// The runtime's connection to a host (ours or AutoGen's `GrpcWorkerAgentRuntimeHost`): the
/// `OpenChannel` stream every message travels on, and the unary calls that register agent
/// types and subscriptions. Every call carries this runtime's `client-id`, and, when the host
/// requires one, `authorization: Bearer <token>`.
///
/// When the stream breaks (the host restarts, the network drops), the connection reopens it
/// with capped, jittered backoff, asks its owner to register everything again
/// (``Reconnection/restore``), and then sends what was published meanwhile from a bounded
/// buffer. While it is down, a publish waits in that buffer; once the buffer is full, further
/// publishes are refused (the plugin's `publish` returns AGENTD_UNAVAILABLE), counted and
/// logged — never dropped silently.
///
/// While it is up, publishes wait in the stream's send queue until the C core takes them; that
/// queue is bounded too (``OutboundLimit``): when the host reads slower than this worker
/// publishes, a burst does not grow the process without end — past the bound, publishes are
/// refused the same way until the queue drains.
public final class HostConnection: ClientCallHandler, @unchecked Sendable {
    // @unchecked Sendable: every mutable field is guarded by `lock`.

    /// How a connection recovers from a broken stream.
    public struct Reconnection: Sendable {
        /// Reconnect at all (a short-lived client may prefer to fail).
        public var enabled: Bool
        /// Waits between attempts grow from `initialBackoff`, doubling, up to `maxBackoff`,
        /// each with up to ±20 % jitter.
        public var initialBackoff: Duration
        public var maxBackoff: Duration
        /// Messages published while disconnected that are kept to send once reconnected.
        public var bufferLimit: Int
        /// Registers the agent types and subscriptions again on the new stream.
        public var restore: @Sendable () async throws -> Void

        public init(enabled: Bool = true, initialBackoff: Duration = .milliseconds(100),
                    maxBackoff: Duration = .seconds(5), bufferLimit: Int = 10_000,
                    restore: @escaping @Sendable () async throws -> Void = {}) {
            self.enabled = enabled
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.bufferLimit = bufferLimit
            self.restore = restore
        }
    }

    /// How many publishes may wait in the stream's send queue (written by this worker, not
    /// yet taken by the transport) before further ones are refused.
    public struct OutboundLimit: Sendable {
        public var messages: Int
        public var bytes: Int
        public init(messages: Int = 10_000, bytes: Int = 64 * 1024 * 1024) {
            self.messages = max(1, messages)
            self.bytes = max(1, bytes)
        }
    }

    /// What happened to a message handed to ``send(_:kind:)``.
    public enum SendResult: Sendable, Equatable {
        case sent
        /// Kept in the buffer until the stream is back.
        case buffered
        /// Refused: the buffer is full, or the message cannot wait (see ``MessageKind``).
        case refused
        /// Refused: the stream is up but ``OutboundLimit`` publishes wait to be written
        /// already (the host reads slower than this worker publishes).
        case full
    }

    /// Whether a message may wait for a reconnection.
    public enum MessageKind: Sendable {
        /// A publish: buffered while disconnected.
        case event
        /// A request or response: only meaningful on the stream it belongs to (the host
        /// forgets pending requests when the stream ends), so refused while disconnected.
        case live
    }

    public let address: String
    public let clientID: String
    private let authToken: String?
    private let channel: Channel
    private let logger: Logger
    private let onMessage: @Sendable (MessageBuffer) -> Void
    private let onDisconnect: @Sendable (Status) -> Void
    private let lock = Lock()
    private var reconnection: Reconnection
    private var stream: ClientCall?
    /// The stream is open and registrations are in place.
    private var connected = false
    private var closed = false
    private var buffer = Deque<MessageBuffer>()
    private var refusedWhileDown = 0
    private let outboundLimit: OutboundLimit
    private var refusedWhileFull = 0
    private var reconnecting: Task<Void, Never>?
    private var endWaiters: [AsyncStream<Void>.Continuation] = []

    /// - Parameters:
    ///   - credentials: plaintext (the default, what AutoGen's hosts speak) or TLS.
    ///   - authToken: sent as `authorization: Bearer <token>` on every call, for a host that
    ///     requires a token.
    ///   - queues: the completion queue the connection's calls use (by default one with a
    ///     poller thread of its own; the runtime passes its dispatcher's, so that the thread
    ///     that reads a message runs its handler).
    ///   - outboundLimit: how many publishes may wait to be written while the stream is up.
    ///   - onMessage: called on the stream's poller thread for every message from the host.
    ///   - onDisconnect: called each time the stream breaks, with its status (before any
    ///     reconnection), and once when it is closed.
    public init(address: String, clientID: String, maxMessageBytes: Int, logger: Logger,
                reconnection: Reconnection = Reconnection(enabled: false),
                credentials: ChannelCredentials = .insecure, authToken: String? = nil,
                queues: CompletionQueueGroup? = nil, outboundLimit: OutboundLimit = OutboundLimit(),
                onMessage: @escaping @Sendable (MessageBuffer) -> Void,
                onDisconnect: @escaping @Sendable (Status) -> Void) {
        self.address = address
        self.outboundLimit = outboundLimit
        self.clientID = clientID
        self.authToken = authToken
        self.logger = logger
        self.reconnection = reconnection
        self.onMessage = onMessage
        self.onDisconnect = onDisconnect
        channel = Channel(configuration: .init(
            target: address, credentials: credentials, maxReceiveMessageBytes: maxMessageBytes * 2 + 1024 * 1024,
            keepaliveInterval: .seconds(10), maxReconnectBackoff: reconnection.maxBackoff),
            queues: queues)
    }

    /// Replaces the reconnection policy (its `restore` usually needs objects created after
    /// the connection).
    public func setReconnection(_ reconnection: Reconnection) {
        lock.withLock { self.reconnection = reconnection }
    }

    private var metadata: Metadata {
        var metadata: Metadata = ["client-id": clientID]
        if let authToken { metadata.add("authorization", "Bearer \(authToken)") }
        return metadata
    }

    /// Opens the data channel. Messages from the host flow to `onMessage` from now on.
    public func open() throws {
        let call = try channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: self)
        lock.withLock {
            stream = call
            connected = true
        }
    }

    /// Whether the stream is up (false while reconnecting).
    public var isConnected: Bool { lock.withLock { connected } }

    /// Messages waiting in the reconnection buffer.
    public var bufferedCount: Int { lock.withLock { buffer.count } }

    /// Messages written to the stream and not yet taken by the transport.
    public var outboundQueued: Int { lock.withLock { stream?.queuedSendCount ?? 0 } }

    /// Registers an agent type as served by this connection.
    /// - Throws: ``TransportError`` with the host's status (for example a type another
    ///   client holds).
    public func register(agentType: String) async throws {
        let request = ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: agentType)
        _ = try await channel.unary(
            method: "/agents.AgentRpc/RegisterAgent", request: MessageBuffer(request), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
    }

    /// Adds a subscription.
    public func add(_ subscription: Subscription) async throws {
        let request = ControlPlaneCodec.encodeAddSubscriptionRequest(subscription)
        _ = try await channel.unary(
            method: "/agents.AgentRpc/AddSubscription", request: MessageBuffer(request), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
    }

    /// Removes a subscription this connection added.
    public func removeSubscription(id: String) async throws {
        let request = ControlPlaneCodec.encodeRemoveSubscriptionRequest(id: id)
        _ = try await channel.unary(
            method: "/agents.AgentRpc/RemoveSubscription", request: MessageBuffer(request), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
    }

    /// Every client's subscriptions, as the host has them.
    public func subscriptions() async throws -> [Subscription] {
        let request = ControlPlaneCodec.encodeGetSubscriptionsRequest()
        let response = try await channel.unary(
            method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer(request), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
        return try response.withUnsafeBytes { try ControlPlaneCodec.decodeGetSubscriptionsResponse($0) }
    }

    /// Sends a message on the data channel (false if it could not go out or wait).
    @discardableResult
    public func send(_ message: MessageBuffer) -> Bool {
        send(message, kind: .live) == .sent
    }

    /// Sends a message, or keeps it for the reconnection if it is an event and the stream is
    /// down (within the buffer's bound).
    public func send(_ message: MessageBuffer, kind: MessageKind) -> SendResult {
        var fullRefusal: Int?
        let (result, logRefusal): (SendResult, Int?) = lock.withLock {
            switch kind {
            case .live:
                // Answers may go out on a stream being restored (the host routes requests to
                // us as soon as our types are registered again).
                if let stream, stream.send(message) { return (.sent, nil) }
                return (.refused, nil)
            case .event:
                // Events keep their order: while the buffer is not flushed, they join it.
                if connected, let stream {
                    switch stream.send(message, maxMessages: outboundLimit.messages, maxBytes: outboundLimit.bytes) {
                    case .queued:
                        refusedWhileFull = 0
                        return (.sent, nil)
                    case .full:
                        refusedWhileFull += 1
                        // One line for the first refusal of a spell, then every 1,000th.
                        if refusedWhileFull == 1 || refusedWhileFull % 1000 == 0 { fullRefusal = refusedWhileFull }
                        return (.full, nil)
                    case .closed:
                        break
                    }
                }
            }
            guard !closed, reconnection.enabled else { return (.refused, nil) }
            guard buffer.count < reconnection.bufferLimit else {
                refusedWhileDown += 1
                // One line for the first refusal and then every 1,000th: counted, not silent.
                return (.refused, refusedWhileDown == 1 || refusedWhileDown % 1000 == 0 ? refusedWhileDown : nil)
            }
            buffer.append(message)
            return (.buffered, nil)
        }
        if let count = fullRefusal {
            logger.warning("publish refused: the host reads slower than this worker publishes and the outbound queue is full", metadata: [
                "host.address": "\(address)", "queue.limit.messages": "\(outboundLimit.messages)",
                "queue.limit.bytes": "\(outboundLimit.bytes)", "refused": "\(count)",
            ])
        }
        if let count = logRefusal {
            logger.warning("publish refused: the host is unreachable and the reconnection buffer is full", metadata: [
                "host.address": "\(address)", "buffer.limit": "\(reconnection.bufferLimit)", "refused": "\(count)",
            ])
        }
        return result
    }

    /// Closes the data channel — after what was queued on it has gone out and the host has
    /// closed its side, or after `drainTimeout` — then the connection.
    public func close(drainTimeout: Duration = .seconds(2)) async {
        let (stream, reconnecting) = lock.withLock { () -> (ClientCall?, Task<Void, Never>?) in
            closed = true
            return (connected ? self.stream : nil, self.reconnecting)
        }
        reconnecting?.cancel()
        if let stream, stream.halfClose() {
            let ended = AsyncStream<Void>.makeStream()
            lock.withLock { endWaiters.append(ended.continuation) }
            if stream.status != nil { ended.continuation.finish() }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in ended.stream {} }
                group.addTask { try? await Task.sleep(for: drainTimeout) }
                await group.next()
                group.cancelAll()
            }
        }
        await channel.shutdown()
        await reconnecting?.value
    }

    // MARK: ClientCallHandler

    public func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        onMessage(message)
    }

    public func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        let (isCurrent, expected, waiters, policy) = lock.withLock { () -> (Bool, Bool, [AsyncStream<Void>.Continuation], Reconnection) in
            let isCurrent = stream === call
            if isCurrent { connected = false }
            return (isCurrent, closed, endWaiters, reconnection)
        }
        for waiter in waiters { waiter.finish() }
        guard isCurrent else { return }
        onDisconnect(status)
        guard !expected else { return }
        logger.error("the channel to the host closed", metadata: [
            "host.address": "\(address)", "status": "\(status)", "reconnecting": "\(policy.enabled)",
        ])
        if policy.enabled { startReconnecting(policy) }
    }

    // MARK: Reconnecting

    private func startReconnecting(_ policy: Reconnection) {
        let task = Task { [weak self] in
            var attempt = 0
            while !Task.isCancelled {
                guard let self else { return }
                let wait = Self.backoff(attempt: attempt, policy: policy)
                try? await Task.sleep(for: wait)
                if Task.isCancelled || self.lock.withLock({ self.closed }) { return }
                attempt += 1
                if await self.reconnect(attempt: attempt, policy: policy) { return }
            }
        }
        lock.withLock { reconnecting = task }
    }

    /// The wait before attempt `attempt` (0 = the first retry): doubling from the initial
    /// backoff up to the cap, ±20 % jitter so that many runtimes do not retry in step.
    static func backoff(attempt: Int, policy: Reconnection) -> Duration {
        let base = policy.initialBackoff * (1 << min(attempt, 20))
        let capped = min(base, policy.maxBackoff)
        return capped * Double.random(in: 0.8...1.2)
    }

    /// One attempt: a new stream, the registrations again, then the buffer. True on success.
    private func reconnect(attempt: Int, policy: Reconnection) async -> Bool {
        let call: ClientCall
        do {
            call = try channel.makeStreamingCall(
                method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: self)
        } catch {
            return false
        }
        lock.withLock { stream = call }
        do {
            try await policy.restore()
        } catch {
            logger.warning("reconnection attempt failed", metadata: [
                "host.address": "\(address)", "attempt": "\(attempt)", "error": "\(error)",
            ])
            call.cancel()
            return false
        }
        // Flush in order; anything published meanwhile goes after the buffer (it is appended
        // to the buffer until `connected` is set, under the same lock).
        let (flushed, refused) = lock.withLock { () -> (Int, Int) in
            var count = 0
            while let message = buffer.first {
                guard call.send(message) else { break }
                buffer.removeFirst()
                count += 1
            }
            connected = buffer.isEmpty && call.status == nil
            defer { refusedWhileDown = 0 }
            return (count, refusedWhileDown)
        }
        guard lock.withLock({ connected }) else { return false }
        logger.notice("reconnected to the host", metadata: [
            "host.address": "\(address)", "attempt": "\(attempt)", "buffered.sent": "\(flushed)",
            "refused.while.down": "\(refused)",
        ])
        return true
    }
}
