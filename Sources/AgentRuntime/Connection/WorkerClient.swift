import AgentCore
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// A publish refused because the host reads slower than this worker publishes: the messages
/// already waiting to be written are at the bound (10,000 or 64 MiB), so the worker's memory
/// stays bounded in a burst. Nothing was queued; publish again once some have gone out (for
/// example after a millisecond).
public struct OutboundQueueFull: Error, Sendable, CustomStringConvertible {
    /// Messages waiting when the publish was refused.
    public var waiting: Int
    public var description: String {
        "publish refused: \(waiting) messages already wait to be written to the host (it reads slower than this worker publishes); try again once they have gone out"
    }
}

/// A small worker for scripts, the CLI (`agentd publish` / `agentd send`) and tests: it joins
/// a host, publishes, sends RPCs and watches topics, without plugins.
public final class WorkerClient: Sendable {
    /// An event the client received.
    public struct Event: Sendable {
        public var topic: TopicID
        public var messageType: String
        public var contentType: String
        public var payload: [UInt8]
        public var sender: AgentID?
        /// The W3C `traceparent` attribute, if the event carries one.
        public var traceparent: String? = nil
    }

    /// An RPC's answer.
    public struct Response: Sendable {
        public var messageType: String
        public var contentType: String
        public var payload: [UInt8]
    }

    public let clientID: String
    /// The agent type this client registers to receive events (`agentd-client-<id>`).
    public let agentType: String
    private let connection: HostConnection
    private let state = Mutex(State())

    private struct State: ~Copyable {
        var pending: [String: PendingCall] = [:]
        var deadlines = DeadlineQueue<String>()
        /// A deadline sweeper is running.
        var sweeping = false
        var nextID: UInt64 = 1
        var events: [AsyncStream<Event>.Continuation] = []
        var closedStatus: Status?
    }

    /// An RPC waiting for its answer.
    private struct PendingCall: Sendable {
        var slot: ResponseSlot
        var target: AgentID
        var timeout: Duration
    }

    /// Connects to the host at `address` and opens the data channel.
    /// - Parameters:
    ///   - credentials: plaintext (the default) or TLS, with a client certificate for a host
    ///     that requires one.
    ///   - authToken: sent as `authorization: Bearer <token>` on every call, for a host that
    ///     requires a token.
    public convenience init(address: String, credentials: ChannelCredentials = .insecure, authToken: String? = nil,
                            logger: Logger = Logger(label: "agentd.client")) throws {
        self.init(address: address, credentials: credentials, authToken: authToken, acknowledgedDelivery: false, logger: logger)
        try open()
    }

    /// Connects to the host at `address`, asking it first to acknowledge this client's
    /// publishes (``Delivery``; our host does, AutoGen's does not), and opens the data channel.
    /// - Throws: ``RuntimeError`` if the host does not answer that question within 10 s.
    /// ``waitUntilAcknowledged(timeout:)`` then tells when the host has handed them over.
    public convenience init(address: String, credentials: ChannelCredentials = .insecure, authToken: String? = nil,
                            acknowledged: Bool, logger: Logger = Logger(label: "agentd.client")) async throws {
        self.init(address: address, credentials: credentials, authToken: authToken, acknowledgedDelivery: acknowledged, logger: logger)
        if acknowledged, await !connection.negotiateDelivery(timeout: .seconds(10), failOnUnreachable: true) {
            await connection.close()
            throw RuntimeError("the host at \(address) did not answer within 10 s (asked whether it acknowledges publishes)")
        }
        try open()
    }

    private init(address: String, credentials: ChannelCredentials, authToken: String?, acknowledgedDelivery: Bool,
                 logger: Logger) {
        let clientID = UUID().uuidString.lowercased()
        self.clientID = clientID
        agentType = "agentd-client-\(clientID.prefix(8))"
        connection = HostConnection(
            address: address, clientID: clientID, maxMessageBytes: 64 * 1024 * 1024, logger: logger,
            credentials: credentials, authToken: authToken, acknowledgedDelivery: acknowledgedDelivery)
    }

    private func open() throws {
        try connection.open(.init(
            onMessage: { [weak self] message in self?.receive(message) },
            onDisconnect: { [weak self] status in self?.closed(status) }))
    }

    /// Waits until the host has acknowledged every publish of this client (see
    /// ``init(address:credentials:authToken:acknowledged:logger:)``), or `timeout` passes.
    /// - Returns: how many are not acknowledged, or nil when the host does not acknowledge
    ///   publishes (AutoGen's host) or they were not asked for.
    public func waitUntilAcknowledged(timeout: Duration) async -> Int? {
        await connection.waitUntilAcknowledged(timeout: timeout)
    }

    /// Publishes `payload` to `topic`.
    public func publish(_ payload: [UInt8], messageType: String, contentType: String = "application/json",
                        to topic: TopicID) throws {
        let bytes = payload.withUnsafeBytes {
            OutboundCodec.event(
                id: OutboundCodec.newID(), topicType: topic.type, topicSource: topic.source, senderType: nil,
                senderKey: nil, messageType: messageType, contentType: contentType, payload: $0)
        }
        switch connection.send(MessageBuffer(bytes), kind: .event) {
        case .sent, .buffered: return
        case .full: throw OutboundQueueFull(waiting: connection.outboundQueued)
        case .refused: throw RuntimeError("the channel to the host is closed")
        }
    }

    /// Publishes `payload` to `topic`, waiting — up to `timeout` — while the outbound queue is
    /// full (back-pressure for a burst) instead of refusing at once.
    /// - Throws: ``OutboundQueueFull`` if the queue stayed full for `timeout`; ``RuntimeError``
    ///   if the channel is closed.
    public func publish(_ payload: [UInt8], messageType: String, contentType: String = "application/json",
                        to topic: TopicID, waitingUpTo timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while true {
            do {
                return try publish(payload, messageType: messageType, contentType: contentType, to: topic)
            } catch let full as OutboundQueueFull {
                if ContinuousClock.now >= deadline { throw full }
                try await Task.sleep(for: .microseconds(500))
            }
        }
    }

    /// Messages published and not yet taken by the transport (bounded: see
    /// ``OutboundQueueFull``).
    public var outboundQueued: Int { connection.outboundQueued }

    /// Sends an RPC to `target` and returns its answer.
    /// - Throws: ``RuntimeError`` with the error text the host or the agent sent back.
    /// - Parameter trace: W3C trace context to send in the request's metadata (as AutoGen does).
    public func send(_ payload: [UInt8], messageType: String, contentType: String = "application/json",
                     to target: AgentID, timeout: Duration = .seconds(60), trace: TraceContext? = nil) async throws -> Response {
        try await issue(payload, messageType: messageType, contentType: contentType, to: target, timeout: timeout, trace: trace).value()
    }

    /// Writes an RPC to the stream now (so that requests started one after the other reach
    /// the host in that order) and returns a task that waits for its answer.
    public func start(_ payload: [UInt8], messageType: String, contentType: String = "application/json",
                      to target: AgentID, timeout: Duration = .seconds(60)) -> Task<Response, any Error> {
        let slot = issue(payload, messageType: messageType, contentType: contentType, to: target, timeout: timeout)
        return Task { try await slot.value() }
    }

    /// Writes the request and registers its answer slot, with its deadline (checked by one
    /// sweeper per client, not a timer per call).
    private func issue(_ payload: [UInt8], messageType: String, contentType: String, to target: AgentID,
                       timeout: Duration, trace: TraceContext? = nil) -> ResponseSlot {
        let slot = ResponseSlot()
        let deadline = ContinuousClock.now + timeout
        let (id, closed, startSweeper): (String, Status?, Bool) = state.withLock { state in
            defer { state.nextID += 1 }
            let id = "c\(state.nextID)"
            guard state.closedStatus == nil else { return (id, state.closedStatus, false) }
            state.pending[id] = PendingCall(slot: slot, target: target, timeout: timeout)
            state.deadlines.schedule(id, at: deadline)
            defer { state.sweeping = true }
            return (id, nil, !state.sweeping)
        }
        if let closed {
            slot.fulfil(.failure(RuntimeError("the channel to the host is closed (\(closed))")))
            return slot
        }
        if startSweeper { startDeadlineSweeper() }
        let bytes = payload.withUnsafeBytes {
            OutboundCodec.request(
                id: id, senderType: nil, senderKey: nil, targetType: target.type, targetKey: target.key,
                messageType: messageType, contentType: contentType, payload: $0, trace: trace)
        }
        if !connection.send(MessageBuffer(bytes)) {
            resolve(id, .failure(RuntimeError("the channel to the host is closed")))
        }
        return slot
    }

    /// Answers the requests past their deadline; runs while any request waits.
    private func startDeadlineSweeper() {
        Task { [weak self] in
            while let self {
                try? await Task.sleep(for: .milliseconds(50))
                let now = ContinuousClock.now
                let (expired, more) = self.state.withLock { state -> ([PendingCall], Bool) in
                    let expired = state.deadlines.removeExpired(now: now).compactMap { state.pending.removeValue(forKey: $0) }
                    state.sweeping = !state.deadlines.isEmpty
                    return (expired, state.sweeping)
                }
                for call in expired {
                    call.slot.fulfil(.failure(RuntimeError("no answer from \(call.target) within \(call.timeout)")))
                }
                if !more { return }
            }
        }
    }

    /// Registers this client's agent type and subscribes it to `topicType`; events of that
    /// topic type then arrive on ``events()``.
    public func subscribe(topicType: String) async throws {
        try await connection.register(agentType: agentType)
        try await connection.add(Subscription(
            id: "\(clientID)/\(topicType)", agentType: agentType, kind: .topicType(topicType)))
    }

    /// Every client's subscriptions, as the host has them.
    public func subscriptions() async throws -> [Subscription] {
        try await connection.subscriptions()
    }

    /// The events this client receives, from now on.
    public func events() -> AsyncStream<Event> {
        let (stream, continuation) = AsyncStream.makeStream(of: Event.self)
        state.withLock { $0.events.append(continuation) }
        return stream
    }

    public func close() async {
        await connection.close()
    }

    private func resolve(_ id: String, _ result: Result<Response, any Error>) {
        let call = state.withLock { state in
            state.deadlines.cancel(id)
            return state.pending.removeValue(forKey: id)
        }
        call?.slot.fulfil(result)
    }

    private func receive(_ buffer: MessageBuffer) {
        guard let message = buffer.withUnsafeBytes({ IncomingMessage($0) }) else { return }
        switch message.kind {
        case .response:
            let id = message.messageID.string
            if message.error.isEmpty {
                resolve(id, .success(Response(
                    messageType: message.messageType.string, contentType: message.contentType.string,
                    payload: Array(message.payload.buffer))))
            } else {
                resolve(id, .failure(RuntimeError(message.error.string)))
            }
        case .event:
            let senderType = message.senderType.string
            let event = Event(
                topic: TopicID(type: message.topicType.string, source: message.topicSource.string),
                messageType: message.messageType.string, contentType: message.contentType.string,
                payload: Array(message.payload.buffer),
                sender: senderType.isEmpty ? nil : AgentID(type: senderType, key: message.senderKey.string),
                traceparent: message.traceparent.isEmpty ? nil : message.traceparent.string)
            for continuation in state.withLock({ $0.events }) { continuation.yield(event) }
        case .request:
            _ = connection.send(MessageBuffer(OutboundCodec.errorResponse(
                requestID: message.messageID.string, error: "\(agentType) is a client, not an agent: it answers no RPCs.")))
        }
    }

    private func closed(_ status: Status) {
        let (pending, events) = state.withLock { state in
            state.closedStatus = status
            defer {
                state.pending = [:]
                state.events = []
            }
            _ = state.deadlines.removeAll()
            return (Array(state.pending.values), state.events)
        }
        for call in pending {
            call.slot.fulfil(.failure(RuntimeError("the channel to the host closed (\(status))")))
        }
        for continuation in events { continuation.finish() }
    }
}

/// One RPC's answer, which may come before or after someone waits for it.
final class ResponseSlot: Sendable {
    private struct State: ~Copyable {
        var result: Result<WorkerClient.Response, any Error>?
        var waiter: CheckedContinuation<WorkerClient.Response, any Error>?
    }
    private let state = Mutex(State())

    func fulfil(_ result: Result<WorkerClient.Response, any Error>) {
        let waiter = state.withLock { state -> CheckedContinuation<WorkerClient.Response, any Error>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(with: result)
    }

    func value() async throws -> WorkerClient.Response {
        try await withCheckedThrowingContinuation { continuation in
            let ready = state.withLock { state -> Result<WorkerClient.Response, any Error>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}
