import AgentCore
import DequeModule
import Foundation
import GRPCTransport
import Logging
import Synchronization

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
///
/// With ``Delivery`` negotiated (our host; ``acknowledged`` set), nothing it accepted is lost
/// when the stream breaks: each publish is kept until the host acknowledges it, and those not
/// acknowledged when the stream breaks are sent again, in order, before anything newer, on the
/// next stream (to the same host or the next of the list). Receivers drop what they already had
/// (``DuplicateWindow``). The connection confirms to the host the events it receives.
public final class HostConnection: Sendable {
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

        public init(enabled: Bool = true, initialBackoff: Duration = .milliseconds(100),
                    maxBackoff: Duration = .seconds(5), bufferLimit: Int = 10_000) {
            self.enabled = enabled
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.bufferLimit = bufferLimit
        }
    }

    /// Where the connection hands what happens on its stream; given to ``open(_:)``.
    public struct Receiver: Sendable {
        /// Every message from the host, on the stream's poller thread.
        public var onMessage: @Sendable (MessageBuffer) -> Void
        /// Each time the stream breaks, with its status (before any reconnection), and once
        /// when it is closed.
        public var onDisconnect: @Sendable (Status) -> Void
        /// Registers the agent types and subscriptions again on a new stream (reconnection).
        public var restore: @Sendable () async throws -> Void

        public init(onMessage: @escaping @Sendable (MessageBuffer) -> Void,
                    onDisconnect: @escaping @Sendable (Status) -> Void = { _ in },
                    restore: @escaping @Sendable () async throws -> Void = {}) {
            self.onMessage = onMessage
            self.onDisconnect = onDisconnect
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

    private struct State: ~Copyable {
        var stream: ClientCall?
        /// The stream is open and registrations are in place.
        var connected = false
        var closed = false
        /// Publishes waiting for the stream to be back.
        var buffer = Deque<MessageBuffer>()
        var refusedWhileDown = 0
        var refusedWhileFull = 0
        var reconnecting: Task<Void, Never>?
        var endWaiters: [AsyncStream<Void>.Continuation] = []
        /// The host in use: an index into `addresses`.
        var current = 0
        /// The host in use answered ``Delivery/negotiateMethod``: the next stream is acknowledged.
        var negotiated = false
        /// The current stream is acknowledged.
        var acking = false
        /// Publishes written on the current stream that the host has not acknowledged, oldest first.
        var unacked = Deque<MessageBuffer>()
        /// Their bytes.
        var unackedBytes = 0
        /// How many of the current stream's publishes the host has acknowledged.
        var acknowledged: UInt64 = 0
        /// Waiting for `unacked` to empty (``close(drainTimeout:)``).
        var drainWaiters: [AsyncStream<Void>.Continuation] = []
    }

    /// The hosts this connection may use, in order of preference (`A, B, C`: after losing
    /// its host the connection moves on to the next one).
    public let addresses: [String]
    /// The host in use now.
    public var address: String { addresses[state.withLock { $0.current }] }
    public let clientID: String
    private let authToken: String?
    /// One channel per host address.
    private let channels: [Channel]
    /// The channel to the host in use.
    private var channel: Channel { channels[state.withLock { $0.current }] }
    private let logger: Logger
    private let reconnection: Reconnection
    private let outboundLimit: OutboundLimit
    private let state = Mutex(State())
    /// Ask for acknowledged delivery (``Delivery``) from hosts that offer it.
    public let acknowledgedDelivery: Bool
    private let counts = DeliveryCounts()

    /// - Parameters:
    ///   - credentials: plaintext (the default, what AutoGen's hosts speak) or TLS.
    ///   - authToken: sent as `authorization: Bearer <token>` on every call, for a host that
    ///     requires a token.
    ///   - queues: the completion queue the connection's calls use (by default one with a
    ///     poller thread of its own; the runtime passes its dispatcher's, so that the thread
    ///     that reads a message runs its handler).
    ///   - outboundLimit: how many publishes may wait to be written while the stream is up.
    ///   - address: `HOST:PORT`, or several separated by commas (failover, in that order).
    public init(address: String, clientID: String, maxMessageBytes: Int, logger: Logger,
                reconnection: Reconnection = Reconnection(enabled: false),
                credentials: ChannelCredentials = .insecure, authToken: String? = nil,
                queues: CompletionQueueGroup? = nil, outboundLimit: OutboundLimit = OutboundLimit(),
                acknowledgedDelivery: Bool = false) {
        let addresses = Self.addresses(in: address)
        self.acknowledgedDelivery = acknowledgedDelivery
        self.addresses = addresses
        self.outboundLimit = outboundLimit
        self.clientID = clientID
        self.authToken = authToken
        self.logger = logger
        self.reconnection = reconnection
        channels = addresses.map { address in
            Channel(configuration: .init(
                target: address, credentials: credentials, maxReceiveMessageBytes: maxMessageBytes * 2 + 1024 * 1024,
                keepaliveInterval: .seconds(10), maxReconnectBackoff: reconnection.maxBackoff),
                queues: queues)
        }
    }

    /// The addresses of a `A, B, C` list (one address is a list of one).
    static func addresses(in list: String) -> [String] {
        let addresses = list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return addresses.isEmpty ? [list] : addresses
    }

    /// How long a host of a list has to answer before the connection tries the next one (a
    /// host that refuses connections fails at once: the probe does not wait for it).
    static let failoverProbeTimeout: Duration = .seconds(2)

    /// With several hosts: makes the first one that answers (in list order) the host in use.
    /// With none answering, the first stays in use (its calls wait for it, as with one host).
    public func chooseReachableHost() async {
        guard channels.count > 1 else { return }
        for index in channels.indices where await isReachable(index) {
            state.withLock { $0.current = index }
            return
        }
    }

    /// Whether host `index` answers a call within ``failoverProbeTimeout``.
    private func isReachable(_ index: Int) async -> Bool {
        let request = ControlPlaneCodec.encodeGetSubscriptionsRequest()
        do {
            _ = try await channels[index].unary(
                method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer(request), metadata: metadata,
                deadline: .after(Self.failoverProbeTimeout), waitForReady: false)
            return true
        } catch {
            logger.warning("host unreachable", metadata: [
                "host.address": "\(addresses[index])", "error": "\(error)",
                "hosts": "\(addresses.joined(separator: ", "))",
            ])
            return false
        }
    }

    private var metadata: Metadata {
        var metadata: Metadata = ["client-id": clientID]
        if let authToken { metadata.add("authorization", "Bearer \(authToken)") }
        return metadata
    }

    /// Asks the host in use whether it acknowledges publishes (``Delivery``); the next stream
    /// opened is acknowledged if it does. Call before ``open(_:)`` (reconnections ask again).
    /// - Returns: false when the host answered that it does not (AutoGen's host), and — with
    ///   `failOnUnreachable` — when it could not be asked; true when it does or delivery is not wanted.
    @discardableResult
    public func negotiateDelivery(timeout: Duration = .seconds(30), failOnUnreachable: Bool = false) async -> Bool {
        guard acknowledgedDelivery else { return true }
        let negotiated: Bool
        do {
            _ = try await channel.unary(
                method: Delivery.negotiateMethod, request: MessageBuffer([]), metadata: metadata,
                deadline: .after(timeout), waitForReady: true)
            negotiated = true
        } catch let error as TransportError where error.status.code == .unimplemented {
            logger.notice("the host does not acknowledge publishes (not an agentd host): publishes in flight when its connection breaks can be lost", metadata: [
                "host.address": "\(address)",
            ])
            negotiated = false
        } catch {
            logger.warning("could not ask the host whether it acknowledges publishes", metadata: [
                "host.address": "\(address)", "error": "\(error)",
            ])
            state.withLock { $0.negotiated = false }
            return !failOnUnreachable
        }
        state.withLock { $0.negotiated = negotiated }
        return true
    }

    /// Publishes the host has acknowledged, and publishes sent again after a reconnection
    /// (not acknowledged on the stream that broke), since the connection was made.
    public var deliveryCounts: (acknowledged: Int, resent: Int) {
        (counts.acknowledged.load(ordering: .relaxed), counts.resent.load(ordering: .relaxed))
    }

    /// How many publishes (and bytes of them) may wait for the host's acknowledgement: as many
    /// as a receiver remembers to drop duplicates (``DuplicateWindow/span``: anything sent again
    /// is within what receivers remember), and no more bytes than the outbound queue's bound.
    /// The window decides a burst's pace: a publisher that outruns its subscribers is held
    /// back once the window is full, until they confirm (measured: 10,000 cost a third of the
    /// throughput of a burst; Benchmarks/delivery).
    public static let unacknowledgedLimit = (messages: Int(DuplicateWindow.span), bytes: 64 * 1024 * 1024)

    /// Publishes written and not yet acknowledged by the host (0 on a stream without acknowledgements).
    public var unacknowledgedCount: Int { state.withLock { $0.unacked.count } }

    /// Whether the current stream is acknowledged.
    public var isAcknowledged: Bool { state.withLock { $0.acking } }

    /// Opens the data channel. Messages from the host flow to `receiver` from now on, and
    /// to it again after each reconnection (each stream's handler holds it, and hands it on
    /// to the reconnection: the connection itself keeps none, so no cycle outlives the
    /// stream through the receiver's closures).
    public func open(_ receiver: Receiver) throws {
        let (call, events) = try openStream(receiver)
        state.withLock { state in
            state.stream = call
            state.connected = true
        }
        events.startConfirming(on: call)
    }

    /// A new `OpenChannel` stream whose events reach `receiver` (acknowledged if the host
    /// agreed to it in ``negotiateDelivery(timeout:failOnUnreachable:)``).
    private func openStream(_ receiver: Receiver) throws -> (ClientCall, StreamEvents) {
        let acking = state.withLock { state in
            state.acking = acknowledgedDelivery && state.negotiated
            state.acknowledged = 0
            return state.acking
        }
        var metadata = self.metadata
        if acking { metadata.add(Delivery.metadataKey, "1") }
        let events = StreamEvents(connection: self, receiver: receiver, acking: acking)
        let call = try channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: events)
        return (call, events)
    }

    /// Opens an `OpenControlChannel` stream on this connection's channel, with the same
    /// `client-id` and token as the data channel (the host routes `clientid=<id>` control
    /// messages by that id); `handler` receives its messages and its end. The caller owns the
    /// stream: the connection neither keeps nor reopens it (``HostControlChannel`` does, for
    /// the runtime), but ``close(drainTimeout:)`` ends it with the channel.
    /// - Parameter waitForReady: wait for the host to be reachable instead of failing with
    ///   `UNAVAILABLE` at once.
    /// - Throws: ``TransportError`` once the connection is closed.
    public func openControlStream(handler: any ClientCallHandler, waitForReady: Bool) throws -> ClientCall {
        try channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenControlChannel", metadata: metadata, waitForReady: waitForReady,
            handler: handler)
    }

    /// Whether the stream is up (false while reconnecting).
    public var isConnected: Bool { state.withLock { $0.connected } }

    /// Messages waiting in the reconnection buffer.
    public var bufferedCount: Int { state.withLock { $0.buffer.count } }

    /// Messages written to the stream and not yet taken by the transport.
    public var outboundQueued: Int { state.withLock { $0.stream?.queuedSendCount ?? 0 } }

    /// Registers an agent type as served by this connection.
    /// - Throws: ``TransportError`` with the host's status (for example a type another
    ///   client holds).
    /// - Parameter shared: the runtime serves it as a shared type (``Placement``): other
    ///   runtimes may serve it too, each the keys the host places on it.
    public func register(agentType: String, shared: Bool = false) async throws {
        let request = ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: agentType)
        var metadata = self.metadata
        if shared { metadata.add(Placement.sharedMetadataKey, "1") }
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
        enum Refusal { case none, full(Int), down(Int), unacknowledged(Int) }
        let (result, refusal): (SendResult, Refusal) = state.withLock { state in
            switch kind {
            case .live:
                // Answers may go out on a stream being restored (the host routes requests to
                // us as soon as our types are registered again).
                if let stream = state.stream, stream.send(message) { return (.sent, .none) }
                return (.refused, .none)
            case .event:
                // Events keep their order: while the buffer is not flushed, they join it.
                if state.connected, let stream = state.stream {
                    if state.acking
                        && (state.unacked.count >= Self.unacknowledgedLimit.messages
                            || state.unackedBytes + message.count > Self.unacknowledgedLimit.bytes) {
                        // As many publishes wait for the host's acknowledgement as could wait
                        // for a reconnection: the host confirms slower than this worker publishes.
                        state.refusedWhileFull += 1
                        let count = state.refusedWhileFull
                        return (.full, count == 1 || count % 1000 == 0 ? .unacknowledged(count) : .none)
                    }
                    switch stream.send(message, maxMessages: outboundLimit.messages, maxBytes: outboundLimit.bytes) {
                    case .queued:
                        state.refusedWhileFull = 0
                        if state.acking {
                            state.unacked.append(message)
                            state.unackedBytes += message.count
                        }
                        return (.sent, .none)
                    case .full:
                        state.refusedWhileFull += 1
                        // One line for the first refusal of a spell, then every 1,000th.
                        let count = state.refusedWhileFull
                        return (.full, count == 1 || count % 1000 == 0 ? .full(count) : .none)
                    case .closed:
                        break
                    }
                }
            }
            guard !state.closed, reconnection.enabled else { return (.refused, .none) }
            guard state.buffer.count < reconnection.bufferLimit else {
                state.refusedWhileDown += 1
                // One line for the first refusal and then every 1,000th: counted, not silent.
                let count = state.refusedWhileDown
                return (.refused, count == 1 || count % 1000 == 0 ? .down(count) : .none)
            }
            state.buffer.append(message)
            return (.buffered, .none)
        }
        switch refusal {
        case .none:
            break
        case .full(let count):
            logger.warning("publish refused: the host reads slower than this worker publishes and the outbound queue is full", metadata: [
                "host.address": "\(address)", "queue.limit.messages": "\(outboundLimit.messages)",
                "queue.limit.bytes": "\(outboundLimit.bytes)", "refused": "\(count)",
            ])
        case .unacknowledged(let count):
            logger.warning("publish refused: the host acknowledges slower than this worker publishes and the unacknowledged publishes are at the bound", metadata: [
                "host.address": "\(address)", "limit.messages": "\(Self.unacknowledgedLimit.messages)",
                "limit.bytes": "\(Self.unacknowledgedLimit.bytes)", "refused": "\(count)",
            ])
        case .down(let count):
            logger.warning("publish refused: the host is unreachable and the reconnection buffer is full", metadata: [
                "host.address": "\(address)", "buffer.limit": "\(reconnection.bufferLimit)", "refused": "\(count)",
            ])
        }
        return result
    }

    /// Waits until the host has acknowledged every publish written on the current stream (or
    /// the stream ends, or `timeout` passes).
    /// - Returns: how many publishes are not acknowledged — written and not acknowledged, or
    ///   kept for a reconnection — or nil when the stream is not acknowledged (AutoGen's host,
    ///   or acknowledgements not asked for): nothing can be known then.
    public func waitUntilAcknowledged(timeout: Duration) async -> Int? {
        let drained = AsyncStream<Void>.makeStream()
        let waiting = state.withLock { state -> Bool? in
            guard state.acking else { return nil }
            guard !state.unacked.isEmpty, state.connected else { return false }
            state.drainWaiters.append(drained.continuation)
            return true
        }
        guard let waiting else { return nil }
        if waiting {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in drained.stream {} }
                group.addTask { try? await Task.sleep(for: timeout) }
                await group.next()
                group.cancelAll()
            }
        }
        return state.withLock { $0.unacked.count + $0.buffer.count }
    }

    /// Closes the data channel — after what was queued on it has gone out and the host has
    /// closed its side, or after `drainTimeout` — then the connection.
    public func close(drainTimeout: Duration = .seconds(2)) async {
        let (stream, reconnecting) = state.withLock { state -> (ClientCall?, Task<Void, Never>?) in
            state.closed = true
            return (state.connected ? state.stream : nil, state.reconnecting)
        }
        reconnecting?.cancel()
        if stream != nil {
            // What the host has not acknowledged yet would be lost with the stream: wait for it
            // (within the drain timeout).
            if let left = await waitUntilAcknowledged(timeout: drainTimeout), left > 0 {
                logger.warning("closing with publishes the host has not acknowledged", metadata: [
                    "host.address": "\(address)", "unacknowledged": "\(left)",
                ])
            }
        }
        if let stream, stream.halfClose() {
            let ended = AsyncStream<Void>.makeStream()
            state.withLock { $0.endWaiters.append(ended.continuation) }
            if stream.status != nil { ended.continuation.finish() }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in ended.stream {} }
                group.addTask { try? await Task.sleep(for: drainTimeout) }
                await group.next()
                group.cancelAll()
            }
        }
        for channel in channels { await channel.shutdown() }
        await reconnecting?.value
        // The last stream's call is over: let it go.
        state.withLock { $0.stream = nil }
    }

    // MARK: The stream's events

    /// One stream's events, for its receiver; the connection hears of the stream's end.
    private final class StreamEvents: ClientCallHandler {
        // The call releases its handler when it ends, so holding the connection forms no cycle.
        let connection: HostConnection
        let receiver: Receiver
        /// The stream is acknowledged: its events are counted and confirmed to the host.
        let acking: Bool
        /// Events received on this stream (read by one thread at a time: the stream's reader).
        private let received = Atomic<UInt64>(0)
        /// The count last confirmed to the host.
        private let confirmed = Atomic<UInt64>(0)
        /// Sends the confirmation of what arrived since the last one, every few milliseconds.
        private let confirming = Mutex<Task<Void, Never>?>(nil)
        /// The stream's call, for the timer's confirmations (set when the timer starts, cleared
        /// when the stream ends).
        private let call = Mutex<ClientCall?>(nil)

        /// A confirmation goes out once this many events arrived unconfirmed, or after
        /// ``confirmInterval`` (50 ms after a quiet spell). Measured (Benchmarks/delivery): confirming
        /// every 64 events or 4 ms, with the host's 2 ms checkpoints, cost the three processes
        /// 15–35 % more CPU (wake-ups and small writes), 25 ms about 5 %.
        static let confirmBatch: UInt64 = 8192
        static let confirmInterval: Duration = .milliseconds(25)

        init(connection: HostConnection, receiver: Receiver, acking: Bool) {
            self.connection = connection
            self.receiver = receiver
            self.acking = acking
        }

        func call(_ call: ClientCall, didReceive message: MessageBuffer) {
            guard acking else { return receiver.onMessage(message) }
            let (count, isEvent) = message.withUnsafeBytes { bytes in
                (Delivery.acknowledgedCount(bytes), Delivery.isEvent(bytes))
            }
            if let count { return connection.acknowledge(count, on: call) }
            receiver.onMessage(message)
            guard isEvent else { return }
            let total = received.wrappingAdd(1, ordering: .releasing).newValue
            if total &- confirmed.load(ordering: .relaxed) >= Self.confirmBatch {
                confirm(total, on: call)
            }
        }

        /// Starts the timer that confirms the stragglers of a batch, on `call` (this stream's).
        func startConfirming(on call: ClientCall) {
            guard acking else { return }
            self.call.withLock { $0 = call }
            let task = Task.detached { [weak self] in
                var pace = Self.confirmInterval
                while !Task.isCancelled {
                    try? await Task.sleep(for: pace)
                    guard let self else { return }
                    let total = self.received.load(ordering: .acquiring)
                    if total != self.confirmed.load(ordering: .relaxed), let call = self.call.withLock({ $0 }) {
                        self.confirm(total, on: call)
                        pace = Self.confirmInterval
                    } else {
                        // Nothing arrived: a slower pace, so that an idle runtime sleeps.
                        pace = .milliseconds(50)
                    }
                }
            }
            confirming.withLock { $0 = task }
        }

        private func confirm(_ total: UInt64, on call: ClientCall) {
            // Two threads may confirm at once (the reader and the timer): counts only grow.
            let previous = confirmed.load(ordering: .relaxed)
            guard total > previous,
                  confirmed.compareExchange(expected: previous, desired: total, ordering: .relaxed).exchanged else { return }
            _ = call.send(MessageBuffer(Delivery.acknowledgement(count: total)))
        }

        func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
            confirming.withLock { $0?.cancel() }
            self.call.withLock { $0 = nil }
            connection.stream(call, didFinishWith: status, receiver: receiver)
        }
    }

    /// The host acknowledged the first `count` publishes of stream `call`.
    private func acknowledge(_ count: UInt64, on call: ClientCall) {
        let (waiters, released) = state.withLock { state -> ([AsyncStream<Void>.Continuation], [MessageBuffer]) in
            guard state.stream === call, count > state.acknowledged else { return ([], []) }
            let newly = Int(min(count - state.acknowledged, UInt64(state.unacked.count)))
            // Freed after the lock (the publishing thread waits on it): the last references.
            let released = Array(state.unacked.prefix(newly))
            for message in released { state.unackedBytes -= message.count }
            state.unacked.removeFirst(newly)
            state.acknowledged = count
            counts.acknowledged.wrappingAdd(newly, ordering: .relaxed)
            guard state.unacked.isEmpty else { return ([], released) }
            defer { state.drainWaiters = [] }
            return (state.drainWaiters, released)
        }
        withExtendedLifetime(released) {}
        for waiter in waiters { waiter.finish() }
    }

    private func stream(_ call: ClientCall, didFinishWith status: Status, receiver: Receiver) {
        let (isCurrent, expected, waiters, unacknowledged) = state.withLock { state in
            let isCurrent = state.stream === call
            var unacknowledged = 0
            if isCurrent {
                state.connected = false
                // Not known to be delivered: they go again first on the next stream.
                unacknowledged = state.unacked.count
                state.buffer.insert(contentsOf: state.unacked, at: 0)
                state.unacked.removeAll()
                state.unackedBytes = 0
                state.acking = false
            }
            return (isCurrent, state.closed, state.endWaiters + state.drainWaiters, unacknowledged)
        }
        for waiter in waiters { waiter.finish() }
        if unacknowledged > 0 {
            counts.resent.wrappingAdd(unacknowledged, ordering: .relaxed)
        }
        guard isCurrent else { return }
        receiver.onDisconnect(status)
        guard !expected else { return }
        logger.error("the channel to the host closed", metadata: [
            "host.address": "\(address)", "status": "\(status)", "reconnecting": "\(reconnection.enabled)",
            "unacknowledged.kept": "\(unacknowledged)",
        ])
        if reconnection.enabled { startReconnecting(receiver) }
    }

    // MARK: Reconnecting

    private func startReconnecting(_ receiver: Receiver) {
        let policy = reconnection
        let task = Task { [weak self] in
            var attempt = 0
            while !Task.isCancelled {
                guard let self else { return }
                let wait = Self.backoff(attempt: attempt, policy: policy)
                try? await Task.sleep(for: wait)
                if Task.isCancelled || self.state.withLock({ $0.closed }) { return }
                attempt += 1
                if await self.reconnect(attempt: attempt, receiver: receiver) { return }
            }
        }
        state.withLock { $0.reconnecting = task }
    }

    /// The wait before attempt `attempt` (0 = the first retry): doubling from the initial
    /// backoff up to the cap, ±20 % jitter so that many runtimes do not retry in step.
    static func backoff(attempt: Int, policy: Reconnection) -> Duration {
        let base = policy.initialBackoff * (1 << min(attempt, 20))
        let capped = min(base, policy.maxBackoff)
        return capped * Double.random(in: 0.8...1.2)
    }

    /// One attempt: a new stream, the registrations again, then the buffer. True on success.
    /// With several hosts each attempt moves on to the next one, once it answers.
    private func reconnect(attempt: Int, receiver: Receiver) async -> Bool {
        if channels.count > 1 {
            let next = state.withLock { ($0.current + 1) % channels.count }
            guard await isReachable(next) else {
                state.withLock { $0.current = next }
                return false
            }
            state.withLock { $0.current = next }
        }
        // Ask again: the host may have changed (another of the list, or AutoGen's in its place).
        guard await negotiateDelivery(timeout: Self.failoverProbeTimeout, failOnUnreachable: true) else { return false }
        let call: ClientCall
        let events: StreamEvents
        do {
            (call, events) = try openStream(receiver)
        } catch {
            return false
        }
        state.withLock { $0.stream = call }
        do {
            try await receiver.restore()
        } catch {
            logger.warning("reconnection attempt failed", metadata: [
                "host.address": "\(address)", "attempt": "\(attempt)", "error": "\(error)",
            ])
            call.cancel()
            return false
        }
        // Flush in order; anything published meanwhile goes after the buffer (it is appended
        // to the buffer until `connected` is set, under the same lock).
        let (flushed, refused, connected) = state.withLock { state -> (Int, Int, Bool) in
            var count = 0
            while let message = state.buffer.first {
                guard call.send(message) else { break }
                state.buffer.removeFirst()
                if state.acking {
                    state.unacked.append(message)
                    state.unackedBytes += message.count
                }
                count += 1
            }
            state.connected = state.buffer.isEmpty && call.status == nil
            defer { state.refusedWhileDown = 0 }
            return (count, state.refusedWhileDown, state.connected)
        }
        guard connected else { return false }
        events.startConfirming(on: call)
        logger.notice("reconnected to the host", metadata: [
            "host.address": "\(address)", "attempt": "\(attempt)", "buffered.sent": "\(flushed)",
            "refused.while.down": "\(refused)",
        ])
        return true
    }
}

/// What acknowledged delivery did over a connection's life (for metrics).
private final class DeliveryCounts: Sendable {
    let acknowledged = Atomic<Int>(0)
    let resent = Atomic<Int>(0)
}
