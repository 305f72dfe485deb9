import AgentCore
import ProtoWire
import AgentMetrics
import GRPCTransport
import Logging

/// The `agents.AgentRpc` server: workers (AutoGen's Python ones, or our runtime) connect to
/// it, register agent types and subscriptions, and exchange events and RPCs through it.
///
/// ```swift
/// let host = try AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: logger)
/// print("listening on \(host.address)")
/// ...
/// await host.shutdown()
/// ```
public final class AgentHost: Sendable {
    public struct Configuration: Sendable {
        /// `HOST:PORT` to listen on (port 0 picks one).
        public var listen: String
        /// The largest message a worker may send; larger ones are refused with a log line
        /// naming the client (AutoGen's default is 4 MiB).
        public var maxMessageBytes: Int
        /// How long a caller waits for an RPC's answer before the host answers with an error.
        public var rpcTimeout: Duration
        /// Poller threads serving calls. One by default: each has its own completion queue,
        /// and with gRPC's default poller a message read on one thread and completed on another
        /// costs a hand-off (measured on 2 cores: RPC p50 275 → 184 µs, p99 441 → 268 µs with
        /// one; Benchmarks/compare).
        public var pollerThreads: Int
        /// What may wait for one connection that reads slowly; past it, events for it are
        /// dropped (counted and logged) and requests to it are answered with an error.
        public var queueLimits: QueueLimits
        /// What may wait for all connections together, in bytes (their queued messages and
        /// the ones being sent). Past it, a connection that holds more than its share (the
        /// budget divided by the connections with messages waiting) is treated as one at its
        /// queue bound: events for it are dropped, counted and logged, requests to it answered
        /// with an error — so the slow readers that spent the budget pay, and a connection that
        /// keeps up is still served. 512 MiB by default: twice one connection's default bound,
        /// so one slow reader still gets its whole queue, while N slow readers together hold
        /// 512 MiB (plus about one message each) instead of N × 256 MiB.
        public var outboundBudgetBytes: Int
        /// Plaintext (what AutoGen's Python workers speak), TLS, or mutual TLS. The host logs
        /// which when it starts listening.
        public var credentials: ServerCredentials
        /// When not empty, every call (streams and unary) must carry one of these in
        /// `authorization: Bearer <token>` metadata; others end with `UNAUTHENTICATED` and a
        /// warning naming the peer and client id (never the token).
        public var authTokens: [String]
        /// The cluster to join (``AgentHost/start(configuration:logger:queues:)``); nil: the
        /// host runs alone.
        public var cluster: ClusterConfiguration?
        /// `HOST:PORT` to serve Prometheus metrics on (`GET /metrics`; port 0 picks one); nil:
        /// no listener.
        public var metricsListen: String?
        /// The registry the host's metrics go to (a runtime passes its own, so that one scrape
        /// shows both); nil: a registry of its own when ``metricsListen`` is set, else no metrics.
        public var metricsRegistry: MetricsRegistry?
        /// How long events that reached no subscriber — and, after the host starts, every
        /// event — are kept for a subscription that arrives late (``Duration/zero``: none are
        /// kept). Events a runtime had not confirmed wait for it to come back for this long, at
        /// least 30 s.
        public var lateWindow: Duration
        /// The most the late-subscriber window holds, in bytes of events; past it the oldest go.
        public var lateWindowBytes: Int
        /// The error an RPC is answered with when the worker it was forwarded to disconnects
        /// before answering; nil (or a nil answer) says "The worker serving T disconnected
        /// before answering; the request may or may not have been handled." `agentd run`'s
        /// supervisor says which plugin crashed, with which signal, on which request.
        public var departedWorkerAnswer: (@Sendable (DepartedRequest) -> String?)?
        /// How long agent types and subscriptions registered by a client with no data channel
        /// open are kept for its channel to open; then they go (logged). AutoGen's workers and
        /// ours open their channel first, or within moments.
        public var registrationsWithoutChannelWindow: Duration = .seconds(30)
        /// A unix socket path the host listens on too (same credentials and tokens), for a
        /// runtime on the same machine: `agentd run`'s runtime process joins its supervisor's
        /// host there (a round trip over it costs about 0.7× one over loopback TCP).
        public var unixSocket: String?

        public init(
            listen: String = "127.0.0.1:50051",
            maxMessageBytes: Int = 4 * 1024 * 1024,
            rpcTimeout: Duration = .seconds(60),
            pollerThreads: Int = 1,
            queueLimits: QueueLimits = QueueLimits(),
            outboundBudgetBytes: Int = 512 * 1024 * 1024,
            credentials: ServerCredentials = .insecure,
            authTokens: [String] = [],
            cluster: ClusterConfiguration? = nil,
            metricsListen: String? = nil,
            metricsRegistry: MetricsRegistry? = nil,
            lateWindow: Duration = .seconds(5),
            lateWindowBytes: Int = 64 * 1024 * 1024
        ) {
            self.lateWindow = lateWindow
            self.lateWindowBytes = lateWindowBytes
            self.metricsListen = metricsListen
            self.metricsRegistry = metricsRegistry
            self.cluster = cluster
            self.queueLimits = queueLimits
            self.outboundBudgetBytes = outboundBudgetBytes
            self.listen = listen
            self.maxMessageBytes = maxMessageBytes
            self.rpcTimeout = rpcTimeout
            self.pollerThreads = pollerThreads
            self.credentials = credentials
            self.authTokens = authTokens
        }
    }

    /// An RPC left unanswered by a worker whose stream ended (``Configuration/departedWorkerAnswer``).
    public struct DepartedRequest: Sendable {
        /// The worker's client id.
        public var clientID: String
        /// The request id the worker was given (the host's own, not the caller's).
        public var requestID: String
        /// The agent addressed.
        public var target: AgentID
    }

    /// The bound of one connection's outbound queue: what may wait for a worker that reads
    /// slower than it is sent to. Past it, events for that worker are dropped — counted and
    /// logged, naming it — and requests to it are answered with an error; every other
    /// connection is unaffected. The defaults leave room for bursts of tens of thousands of
    /// events to a healthy worker.
    public struct QueueLimits: Sendable, Hashable {
        public var messages: Int
        public var bytes: Int
        public init(messages: Int = 100_000, bytes: Int = 256 * 1024 * 1024) {
            self.messages = messages
            self.bytes = bytes
        }
    }

    public let configuration: Configuration
    let logger: Logger
    let table: RoutingTable
    /// Charged with every connection's waiting messages (``Configuration/outboundBudgetBytes``).
    let outboundBudget: SendBudget
    /// Which credential each client id belongs to.
    let identities = ClientIdentities()
    /// The host's metrics (nil: it keeps none).
    let metrics: HostMetrics?
    /// Serves them, when ``Configuration/metricsListen`` is set.
    let metricsListener: MetricsListener?
    private let server: Server
    private let sweeper = Mutex<Task<Void, Never>?>(nil)
    let isShuttingDown = ShutdownFlag()
    /// `grpc.health.v1.Health`: what it reports and its open watches.
    let health = HealthService()
    /// When the host started serving (for its status's uptime).
    let startedAt = ContinuousClock.now
    /// Acknowledged delivery to and from our runtimes.
    let ledger: DeliveryLedger
    /// Events kept for late subscribers (nil: ``Configuration/lateWindow`` is zero).
    let late: LateEvents?
    /// The host's membership of a cluster, once it has joined one.
    private let clusterSlot = Mutex<ClusterMember?>(nil)

    /// The cluster this host belongs to (nil: it runs alone).
    var cluster: ClusterMember? { clusterSlot.withLock { $0 } }

    /// The bound `HOST:PORT` (with the port picked when the configuration asked for 0).
    public var address: String {
        let host = configuration.listen.split(separator: ":").dropLast().joined(separator: ":")
        return "\(host.isEmpty ? "0.0.0.0" : host):\(server.port)"
    }

    public var port: Int { server.port }

    /// Messages waiting to be sent to each connected client (for tests and metrics).
    public func queuedMessages() -> [String: Int] {
        Dictionary(table.allConnections().map { ($0.clientID, $0.queuedMessages) }, uniquingKeysWith: max)
    }

    /// Events (and their bytes) kept now for late subscribers.
    public var lateUsage: (events: Int, bytes: Int) { late?.usage ?? (0, 0) }

    /// Events dropped for each connected client because it read too slowly.
    public func droppedEvents() -> [String: Int] {
        Dictionary(table.allConnections().map { ($0.clientID, $0.droppedEvents) }, uniquingKeysWith: max)
    }

    /// The bytes waiting to be sent to all connections together (what
    /// ``Configuration/outboundBudgetBytes`` bounds).
    public var outboundBytes: Int { outboundBudget.bytes }

    /// Messages refused so far because the outbound budget was spent (each to a connection
    /// holding more than its share).
    public var outboundBudgetRefusals: Int { outboundBudget.refusals }

    /// The size past which the C core itself ends a sender's stream.
    var hardMessageLimit: Int { Self.hardLimit(for: configuration.maxMessageBytes) }

    private static func hardLimit(for limit: Int) -> Int {
        min(Int(Int32.max), limit * 2 + 1024 * 1024)
    }

    /// Starts listening and serving.
    /// - Parameter queues: the completion queue(s) the host's calls use (by default its own,
    ///   ``Configuration/pollerThreads`` of them with a thread each). A runtime with an embedded
    ///   host passes the queue its handler threads poll, so that the process has one.
    /// - Throws: ``TransportError`` naming the address if it cannot listen there.
    public init(configuration: Configuration, logger: Logger, queues: CompletionQueueGroup? = nil) throws {
        self.configuration = configuration
        self.logger = logger
        let table = RoutingTable()
        self.table = table
        let outboundBudget = SendBudget(limit: max(1, configuration.outboundBudgetBytes))
        self.outboundBudget = outboundBudget
        // A runtime back within 30 s finds what it had not confirmed: its reconnection backoff
        // is at most 6 s, and the host notices a silently dropped stream within 30 s (its old id
        // is refused until then).
        let ledger = DeliveryLedger(parkingWindow: max(configuration.lateWindow, .seconds(30)), logger: logger)
        self.ledger = ledger
        let late = configuration.lateWindow > .zero
            ? LateEvents(window: configuration.lateWindow, byteLimit: configuration.lateWindowBytes, logger: logger) : nil
        self.late = late
        // Before the server: a metrics address it cannot listen on fails the start with nothing to stop.
        (metrics, metricsListener) = try HostMetrics.start(
            configuration, table: table, budget: outboundBudget, ledger: ledger, late: late, logger: logger)
        let router = HostRouter(tokens: BearerTokens(configuration.authTokens))
        // The C core refuses what exceeds its own limit by ending the whole stream; let it
        // through up to well past ours, so that we refuse it instead, with a log line and an
        // answer to the sender, and its stream stays up.
        let hardLimit = Self.hardLimit(for: configuration.maxMessageBytes)
        server = try Server(
            configuration: .init(
                address: configuration.listen, credentials: configuration.credentials,
                maxReceiveMessageBytes: hardLimit, pollerThreads: configuration.pollerThreads,
                keepaliveInterval: Self.keepaliveInterval, sendBudget: outboundBudget,
                unixSocket: configuration.unixSocket),
            router: router, queues: queues)
        let interval = min(Duration.milliseconds(100), configuration.rpcTimeout / 4)
        let identities = self.identities
        sweeper.withLock { sweeper in
            sweeper = Task.detached { [weak self] in
                var nextForget = ContinuousClock.now
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    guard let self else { return }
                    late?.prune(now: .now)
                    if nextForget <= .now {
                        identities.forgetDeparted(now: .now)
                        removeRegistrationsWithoutChannel()
                        nextForget = .now + .seconds(1)
                    }
                    for request in table.expiredRequests(now: .now) {
                        metrics?.rpcTimedOut()
                        logger.warning("RPC timed out", metadata: [
                            "caller": "\(request.caller)", "agent.id": "\(request.target)",
                            "request.id": "\(request.originalRequestID)",
                        ])
                        answer(request, error: "No response from agent \(request.target) within \(configuration.rpcTimeout) (the host's RPC deadline).")
                    }
                }
            }
        }
        router.host = self
        ledger.start { [weak self] in await self?.cluster?.flushForwardedEvents() }
        logger.info("host listening", metadata: [
            "host.address": "\(address)", "host.transport": "\(configuration.credentials)",
            "host.auth": "\(configuration.authTokens.isEmpty ? "none" : "bearer token")",
        ])
        if !configuration.credentials.isTLS {
            // A visible choice: AutoGen's Python workers speak plaintext only.
            logger.notice(
                configuration.authTokens.isEmpty
                    ? "host listening with plaintext HTTP/2: anyone who reaches the port can join, and traffic is readable on the network"
                    : "host listening with plaintext HTTP/2: authorization tokens and traffic are readable on the network",
                metadata: ["host.address": "\(address)"])
        }
    }

    /// Forgets what clients registered without opening a data channel within
    /// ``Configuration/registrationsWithoutChannelWindow``.
    private func removeRegistrationsWithoutChannel() {
        let window = configuration.registrationsWithoutChannelWindow
        for (clientID, departure) in table.removeRegistrationsWithoutChannel(since: .now - window) {
            guard !departure.agentTypes.isEmpty || departure.subscriptionCount > 0 else { continue }
            settle(departure, of: clientID)
            logger.warning("registrations of a client that opened no data channel within the window removed", metadata: [
                "client.id": "\(clientID)", "window": "\(window)", "agent.types": "\(departure.agentTypes)",
                "subscriptions": "\(departure.subscriptionCount)",
            ])
        }
    }

    /// Tells the cluster and the waiting callers what a client's departure took with it.
    func settle(_ departure: RoutingTable.Departure, of clientID: String) {
        cluster?.workerLeft(
            client: clientID, types: departure.agentTypes.filter { !departure.sharedTypes.contains($0) },
            sharedTypes: departure.sharedTypes, subscriptionIDs: departure.subscriptionIDs)
        for shared in departure.sharedChanges { announce(shared) }
        let explain = configuration.departedWorkerAnswer
        for (id, request) in departure.unanswered {
            let text = explain?(.init(clientID: clientID, requestID: String(id), target: request.target))
            answer(request, error: text ?? "The worker serving \(request.target) disconnected before answering; the request may or may not have been handled.")
        }
    }

    /// The host pings each connection this often, so that one whose peer vanished (a network
    /// drop without a reset) ends within about 30 s — and its client id is free again for the
    /// same client's reconnection (``ClientIdentities``).
    static let keepaliveInterval = Duration.seconds(10)

    /// Starts listening and serving, and, when `configuration.cluster` is set, joins the
    /// cluster: connects to NATS, publishes what this host serves and learns what the others do.
    /// - Throws: ``TransportError`` naming the address if it cannot listen there;
    ///   ``ClusterError`` naming the NATS address if it cannot join (the host is stopped then).
    public static func start(configuration: Configuration, logger: Logger, queues: CompletionQueueGroup? = nil) async throws -> AgentHost {
        let host = try AgentHost(configuration: configuration, logger: logger, queues: queues)
        guard let cluster = configuration.cluster else { return host }
        do {
            let member = try await ClusterMember.join(cluster, host: host, logger: logger)
            host.clusterSlot.withLock { $0 = member }
            await member.publishLocalState()
        } catch {
            await host.shutdown(gracePeriod: .zero)
            throw error
        }
        return host
    }

    /// The host's view of its cluster: its name, whether its NATS connection is up, the other
    /// hosts it hears from. Nil when it runs alone.
    public var clusterStatus: ClusterStatus? { cluster?.status }

    /// Stops accepting work, answers every pending RPC with an error, ends every stream and
    /// closes the listener.
    public func shutdown(gracePeriod: Duration = .seconds(2)) async {
        guard isShuttingDown.set() else { return }
        health.shutdownStarted()
        logger.info("host shutting down", metadata: ["host.address": "\(address)"])
        sweeper.withLock { $0?.cancel() }
        ledger.stop()
        if let cluster { await cluster.leave() }
        for request in table.drainPending() {
            answer(request, error: "The host is shutting down; request to \(request.target) not answered.")
        }
        for connection in table.allConnections() {
            connection.call.finish(Status(.unavailable, "the host is shutting down"))
        }
        health.stop()
        await server.shutdown(gracePeriod: gracePeriod)
        metricsListener?.stop()
        metrics?.close()
        logger.info("host stopped")
    }

}

/// Set once when shutdown starts.
final class ShutdownFlag: Sendable {
    private let flag = Mutex(false)
    /// Sets the flag; true if this call set it.
    func set() -> Bool {
        flag.withLock { value in
            defer { value = true }
            return !value
        }
    }
}

import Synchronization

/// Routes the six `agents.AgentRpc` methods to their handlers, and the health and status calls.
final class HostRouter: CallRouter, @unchecked Sendable {
    // @unchecked Sendable: `host` is set once, right after the server starts and before
    // any call can reach `handler(for:)` that needs it (calls arriving earlier see nil and
    // are refused with UNAVAILABLE); it is never changed afterwards.
    nonisolated(unsafe) weak var host: AgentHost?
    let tokens: BearerTokens

    init(tokens: BearerTokens) { self.tokens = tokens }

    func handler(for call: ServerCall) -> (any ServerCallHandler)? {
        guard let host else {
            call.finish(Status(.unavailable, "the host is starting"))
            return nil
        }
        // Before anything else: a caller without a valid token learns nothing about the host.
        let token = tokens.acceptedToken(authorization: call.metadata["authorization"])
        guard token != nil || !tokens.isEnabled else {
            host.logger.warning("call without a valid authorization token refused", metadata: [
                "grpc.method": "\(call.method)", "peer": "\(call.peer)",
                "client.id": "\((call.metadata["client-id"] ?? "").prefix(128))",
                "authorization": "\(call.metadata["authorization"] == nil ? "missing" : "invalid")",
            ])
            call.finish(Status(.unauthenticated, "a valid authorization token is required"))
            return nil
        }
        // Health and status calls are not a worker's: they need no client-id.
        if call.method.hasPrefix(HealthService.methodPrefix) { return host.health.handler(for: call) }
        if call.method == AgentHost.statusMethod { return StatusCall(host: host) }
        if call.method == Delivery.negotiateMethod { return NegotiateCall() }
        guard let clientID = call.metadata["client-id"], !clientID.isEmpty else {
            host.logger.warning("call without client-id metadata refused", metadata: [
                "grpc.method": "\(call.method)", "peer": "\(call.peer)",
            ])
            call.finish(Status(.invalidArgument, "client-id metadata not found."))
            return nil
        }
        guard clientID.utf8.count <= FieldLimits.clientID else {
            host.logger.warning("call with an over-long client-id refused", metadata: [
                "grpc.method": "\(call.method)", "peer": "\(call.peer)", "client.id.bytes": "\(clientID.utf8.count)",
            ])
            call.finish(Status(.invalidArgument, "\(FieldLimits.Violation(field: "client-id metadata", bytes: clientID.utf8.count, limit: FieldLimits.clientID))."))
            return nil
        }
        // A client id belongs to the credential it first came with (ClientIdentities).
        let credential = ClientIdentities.Credential(certificate: call.peerCertificateIdentity, token: token)
        guard host.identities.begin(clientID, credential) else {
            host.logger.warning("call under a client id that belongs to another credential refused", metadata: [
                "grpc.method": "\(call.method)", "peer": "\(call.peer)", "client.id": "\(clientID)",
                "credential": "\(credential)",
            ])
            call.finish(Status(.permissionDenied, "client-id '\(clientID)' belongs to another credential; use a client id of your own"))
            return nil
        }
        switch call.method {
        case "/agents.AgentRpc/OpenChannel":
            let delivery = call.metadata[Delivery.metadataKey] == "1"
                ? AcknowledgedStream(limit: (host.configuration.queueLimits.messages, host.configuration.queueLimits.bytes)) : nil
            let connection = WorkerConnection(clientID: clientID, call: call, delivery: delivery)
            guard host.table.attachData(connection) else { return refuseSecondStream(call, clientID, host) }
            return DataChannel(host: host, connection: connection)
        case "/agents.AgentRpc/OpenControlChannel":
            let connection = WorkerConnection(clientID: clientID, call: call)
            guard host.table.attachControl(connection) else { return refuseSecondStream(call, clientID, host) }
            return ControlChannel(host: host, connection: connection)
        case "/agents.AgentRpc/RegisterAgent", "/agents.AgentRpc/AddSubscription",
            "/agents.AgentRpc/RemoveSubscription", "/agents.AgentRpc/GetSubscriptions":
            return RegistrationCall(host: host, clientID: clientID)
        default:
            host.identities.end(clientID)
            call.finish(Status(.unimplemented, "agents.AgentRpc has no method \(call.method)"))
            return nil
        }
    }

    /// Refuses a stream under a client id that has one of its kind open: a client id serves
    /// one live stream at a time, so a peer presenting another's id cannot take its stream.
    private func refuseSecondStream(_ call: ServerCall, _ clientID: String, _ host: AgentHost) -> (any ServerCallHandler)? {
        host.identities.end(clientID)
        host.logger.warning("a second stream under a client id that has one open refused", metadata: [
            "grpc.method": "\(call.method)", "peer": "\(call.peer)", "client.id": "\(clientID)",
        ])
        call.finish(Status(.alreadyExists, """
            client-id '\(clientID)' has a stream of this kind open already; a client id serves one at a time \
            (a client reconnecting after a network drop gets in once the host sees the old stream end, within about 30 s)
            """))
        return nil
    }
}

/// ``AgentCore/Delivery/negotiateMethod``: answers OK, telling our runtime this host
/// acknowledges publishes.
final class NegotiateCall: ServerCallHandler {
    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        call.respond(MessageBuffer([]))
    }
}
