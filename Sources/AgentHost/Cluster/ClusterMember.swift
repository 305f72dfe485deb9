#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import AgentCluster
import AgentCore
import GRPCTransport
import Logging
import ProtoWire
import Synchronization

/// A host's membership of a cluster of hosts over NATS.
///
/// Each host keeps its own routing table as when alone; the cluster adds what the other hosts
/// serve, learned from two JetStream key-value buckets every host writes its own part of and
/// watches (``ClusterNames/agentTypesBucket``: who holds each agent type, claimed with a create
/// so that one client holds it cluster-wide; ``ClusterNames/subscriptionsBucket``: every
/// worker's subscriptions). Messages cross on core NATS subjects of the receiving host: an event
/// goes once to each host serving a subscribed type and is delivered there to its workers only
/// (never forwarded again); a request goes to the host serving its type with a reply subject of
/// its own, and the answer comes back on it. Hosts say they are alive every
/// ``ClusterConfiguration/heartbeat``; a host not heard from for ``ClusterConfiguration/lease``
/// is taken for dead: its requests are answered with an error and its entries removed.
final class ClusterMember: Sendable {
    let name: String
    /// This process: a host restarted under the same name is another incarnation.
    let incarnation: String
    let configuration: ClusterConfiguration
    let connection: NATSConnection
    /// Events forwarded to other hosts go on a connection of their own that batches its writes
    /// (nats.c's default: a flush at most every millisecond). On ``connection`` every publish is
    /// written at once (requests, answers, heartbeats: latency counts); events that way cost a
    /// system call each here and at the NATS server — measured: cross-host publish 0.18× of
    /// one host's, against 0.81× batched.
    let eventConnection: NATSConnection
    /// Events forwarded, and the count the last flush covered (``flushForwardedEvents()``).
    private let eventsForwarded = Atomic<Int>(0)
    private let eventsFlushed = Atomic<Int>(0)
    let agentTypes: KeyValueBucket
    let subscriptions: KeyValueBucket
    let sharedMembers: KeyValueBucket
    weak let host: AgentHost?
    let table: RoutingTable
    let logger: Logger
    private let state = Mutex(State())
    private let operations: AsyncStream<Operation>
    private let enqueue: AsyncStream<Operation>.Continuation
    private let background = Mutex<Background>(Background())

    private struct State {
        var connected = true
        var leaving = false
        /// Other hosts: when each was last heard from, and its incarnation.
        var lastHeard: [String: (at: ContinuousClock.Instant, incarnation: String?)] = [:]
        /// This host's claims: agent type → client and the claim's revision.
        var claims: [String: (client: String, revision: UInt64)] = [:]
        /// Other hosts' claims: agent type → host and revision (to remove a dead host's).
        var remoteClaims: [String: (host: String, revision: UInt64)] = [:]
        /// Other hosts' subscription keys and their revisions.
        var remoteSubscriptionKeys: [String: [String: UInt64]] = [:]
        /// Other hosts' shared-type member keys and their revisions.
        var remoteSharedKeys: [String: [String: UInt64]] = [:]
        /// Client id → the host it is connected to, learned from control messages' `respond_to`.
        var clientRoutes: [String: String] = [:]
        /// Host → its events subject (made once per host).
        var eventSubjects: [String: String] = [:]
        var forwardFailures = 0
        var nameClashLogged = false
        /// A resynchronisation is queued for an eviction (not queued again until it runs).
        var resynchronisationQueued = false
        /// When this host joined: a holder not heard from yet counts as alive until a lease
        /// after that.
        var joined = ContinuousClock.now
    }

    private struct Background {
        var tasks: [Task<Void, Never>] = []
        var subscriptions: [NATSSubscription] = []
        var watches: [KeyValueWatch] = []
    }

    /// Key-value writes, made one at a time in order by one task.
    private enum Operation: Sendable {
        case claim(type: String, client: String, CheckedContinuation<ClaimResult, Never>)
        case release(type: String, client: String)
        case putSubscription(Subscription)
        case deleteSubscription(id: String)
        case putSharedMember(type: String, client: String)
        case deleteSharedMember(type: String, client: String)
        case resynchronise
        /// Resumed when the operations before it are done.
        case barrier(CheckedContinuation<Void, Never>)
        case removeHost(String, entries: [(bucket: KeyValueBucket, key: String, revision: UInt64)])
    }

    enum ClaimResult: Sendable {
        case claimed
        /// Another client holds the type.
        case heldBy(TypeClaim)
        /// NATS cannot be reached now: the type is served here and claimed once it is back.
        case deferred(String)
    }

    private init(
        name: String, configuration: ClusterConfiguration, connection: NATSConnection, eventConnection: NATSConnection,
        agentTypes: KeyValueBucket,
        subscriptions: KeyValueBucket, sharedMembers: KeyValueBucket, host: AgentHost, logger: Logger
    ) {
        self.sharedMembers = sharedMembers
        self.name = name
        self.incarnation = String(UInt64.random(in: 1...UInt64.max), radix: 16)
        self.configuration = configuration
        self.connection = connection
        self.eventConnection = eventConnection
        self.agentTypes = agentTypes
        self.subscriptions = subscriptions
        self.host = host
        self.table = host.table
        var logger = logger
        logger[metadataKey: "cluster.host"] = "\(name)"
        self.logger = logger
        (operations, enqueue) = AsyncStream.makeStream(of: Operation.self)
    }

    // MARK: - Joining and leaving

    /// Connects to NATS, binds the buckets, removes what a previous process under this name
    /// left, and starts listening to the cluster.
    static func join(_ configuration: ClusterConfiguration, host: AgentHost, logger: Logger) async throws -> ClusterMember {
        let name = configuration.name ?? "\(Self.machineName()):\(host.port)"
        var options = configuration.nats
        options.name = options.name ?? "agentd host \(name)"
        options.sendImmediately = true
        let connection: NATSConnection
        do {
            connection = try await NATSConnection.connect(options, logger: logger)
        } catch {
            throw ClusterError("cannot join the cluster as \(name): \(error)")
        }
        var eventOptions = options
        eventOptions.name = "\(options.name ?? name) events"
        eventOptions.sendImmediately = false
        // It makes no blocking calls but its connect.
        eventOptions.blockingCallThreads = 1
        let eventConnection: NATSConnection
        do {
            eventConnection = try await NATSConnection.connect(eventOptions, logger: logger)
        } catch {
            await connection.close()
            throw ClusterError("cannot join the cluster as \(name): \(error)")
        }
        do {
            let member = ClusterMember(
                name: name, configuration: configuration, connection: connection, eventConnection: eventConnection,
                agentTypes: try await connection.createOrBindBucket(bucketConfiguration(ClusterNames.agentTypesBucket)),
                subscriptions: try await connection.createOrBindBucket(bucketConfiguration(ClusterNames.subscriptionsBucket)),
                sharedMembers: try await connection.createOrBindBucket(bucketConfiguration(ClusterNames.sharedTypesBucket)),
                host: host, logger: logger)
            try await member.removeLeftovers()
            try await member.start()
            member.logger.info("joined the cluster", metadata: [
                "nats": "\(connection.connectedURL ?? connection.address)", "cluster.lease": "\(configuration.lease)",
            ])
            return member
        } catch {
            await connection.close()
            await eventConnection.close()
            throw error as? ClusterError ?? ClusterError("cannot join the cluster as \(name) through NATS at \(connection.address): \(error)")
        }
    }

    /// The buckets' settings: one value per key, kept on disk.
    private static func bucketConfiguration(_ name: String) -> KeyValueBucket.Configuration {
        var configuration = KeyValueBucket.Configuration(name: name)
        configuration.description = switch name {
        case ClusterNames.agentTypesBucket: "agentd: which client holds each agent type"
        case ClusterNames.sharedTypesBucket: "agentd: the workers of each shared agent type"
        default: "agentd: every worker's subscriptions"
        }
        return configuration
    }

    private static func machineName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Claims and subscriptions a previous process under this name left (killed before it
    /// could remove them): this process starts with no workers.
    private func removeLeftovers() async throws {
        for key in try await agentTypes.keys() {
            guard let entry = try await agentTypes.get(key), entry.operation == .put,
                  let claim = TypeClaim(entry.value), claim.host == name else { continue }
            try? await agentTypes.delete(key, ifRevision: entry.revision)
        }
        let prefix = ClusterNames.token(name) + "."
        for key in try await subscriptions.keys() where key.hasPrefix(prefix) {
            try? await subscriptions.delete(key)
        }
        for key in try await sharedMembers.keys() where ClusterNames.parseSharedMemberKey(key)?.host == name {
            try? await sharedMembers.delete(key)
        }
    }

    private func start() async throws {
        let subjects = [
            (ClusterNames.events(name), handleEvent(_:)),
            (ClusterNames.requests(name), handleRequest(_:)),
            (ClusterNames.replies(name) + ".>", handleReply(_:)),
            (ClusterNames.control(name), handleControl(_:)),
            (ClusterNames.heartbeats, handleHeartbeat(_:)),
        ]
        var natsSubscriptions: [NATSSubscription] = []
        for (subject, handler) in subjects {
            natsSubscriptions.append(try connection.subscribe(to: subject) { [weak self] message in
                guard self != nil else { return }
                handler(message)
            })
        }
        background.withLock { $0.subscriptions = natsSubscriptions }
        let typeWatch = try await agentTypes.watch { [weak self] event in self?.agentTypeChanged(event) }
        let subscriptionWatch = try await subscriptions.watch { [weak self] event in self?.subscriptionChanged(event) }
        let sharedWatch = try await sharedMembers.watch { [weak self] event in self?.sharedMemberChanged(event) }
        try await connection.flush()
        let events = connection.events()
        let tasks: [Task<Void, Never>] = [
            Task { [weak self] in await self?.runOperations() },
            Task { [weak self] in
                for await event in events {
                    guard let self else { return }
                    connectionEvent(event)
                }
            },
            Task { [weak self] in
                while !Task.isCancelled {
                    guard let self else { return }
                    let interval = configuration.heartbeat
                    beat()
                    try? await Task.sleep(for: interval)
                }
            },
        ]
        background.withLock { background in
            background.watches = [typeWatch, subscriptionWatch, sharedWatch]
            background.tasks = tasks
        }
    }

    /// Publishes what this host serves (its claims and subscriptions) — after joining, and
    /// after NATS comes back.
    func publishLocalState() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            enqueue.yield(.resynchronise)
            // The operations run in order: the barrier is passed once the resynchronisation is done.
            if case .terminated = enqueue.yield(.barrier(done)) { done.resume() }
        }
    }

    /// Leaves the cluster: says so (the others forget this host at once), removes this host's
    /// claims and subscriptions, and closes the NATS connection.
    func leave() async {
        let first = state.withLock { state -> Bool in
            defer { state.leaving = true }
            return !state.leaving
        }
        guard first else { return }
        try? connection.publish(ClusterNames.heartbeats, payload: Heartbeat(host: name, incarnation: incarnation, leaving: true).encoded)
        enqueue.finish()
        let background = background.withLock { background -> Background in
            defer { background = Background() }
            return background
        }
        // The operations still queued finish at once (no writes while leaving: each answers its
        // waiter); one under way may take its JetStream timeout: at most 2 s are waited for it.
        if let operations = background.tasks.first { await Self.bounded(.seconds(2)) { await operations.value } }
        if state.withLock({ $0.connected }) {
            // This host's entries, removed together, at most 2 s (the others remove what is left
            // once the leave heartbeat is heard).
            let claims = state.withLock { state in state.claims.map { ($0.key, $0.value.revision) } }
            let subscriptionKeys = table.localSubscriptions().map { ClusterNames.subscriptionKey(host: name, id: $0.id) }
            let memberKeys = table.localSharedMembers().flatMap { type, clients in
                clients.map { ClusterNames.sharedMemberKey(type: type, host: name, client: $0) }
            }
            let (agentTypes, subscriptions, sharedMembers) = (self.agentTypes, self.subscriptions, self.sharedMembers)
            await Self.bounded(.seconds(2)) {
                await withTaskGroup(of: Void.self) { group in
                    for (type, revision) in claims {
                        group.addTask { try? await agentTypes.delete(ClusterNames.token(type), ifRevision: revision) }
                    }
                    for key in subscriptionKeys { group.addTask { try? await subscriptions.delete(key) } }
                    for key in memberKeys { group.addTask { try? await sharedMembers.delete(key) } }
                }
            }
        }
        for task in background.tasks { task.cancel() }
        for watch in background.watches { watch.stop() }
        for subscription in background.subscriptions { subscription.unsubscribe() }
        await eventConnection.close()
        await connection.close()
        logger.info("left the cluster")
    }

    /// Waits for `work` at most `limit` (past it, the work goes on in the background: a task
    /// group would wait for its child, which an awaited task's value does not let cancel).
    private static func bounded(_ limit: Duration, _ work: @escaping @Sendable () async -> Void) async {
        let (ended, end) = AsyncStream.makeStream(of: Void.self)
        Task {
            await work()
            end.finish()
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            end.finish()
        }
        for await _ in ended {}
        timer.cancel()
    }

    var status: ClusterStatus {
        let (connected, peers) = state.withLock { state in (state.connected, state.lastHeard.keys.sorted()) }
        return ClusterStatus(
            name: name, nats: connection.address, connected: connected, peers: peers,
            remoteAgentTypes: state.withLock { $0.remoteClaims.count })
    }

    var isConnected: Bool { state.withLock { $0.connected } }

    /// Key-value writes may be made: connected, and not leaving (then only the leave's own).
    private var canWrite: Bool { state.withLock { $0.connected && !$0.leaving } }

    // MARK: - What this host's workers do

    /// Claims `type` for `client` cluster-wide.
    func claim(type: String, client: String) async -> ClaimResult {
        await withCheckedContinuation { continuation in
            if case .terminated = enqueue.yield(.claim(type: type, client: client, continuation)) {
                continuation.resume(returning: .deferred("the host is leaving the cluster"))
            }
        }
    }

    /// A worker that held `types` and served `sharedTypes` disconnected.
    func workerLeft(client: String, types: [String], sharedTypes: [String], subscriptionIDs: [String]) {
        for type in types { enqueue.yield(.release(type: type, client: client)) }
        for type in sharedTypes { enqueue.yield(.deleteSharedMember(type: type, client: client)) }
        for id in subscriptionIDs { enqueue.yield(.deleteSubscription(id: id)) }
    }

    func subscriptionAdded(_ subscription: Subscription) { enqueue.yield(.putSubscription(subscription)) }

    /// A worker of this host serves shared type `type` now.
    func sharedMemberJoined(type: String, client: String) { enqueue.yield(.putSharedMember(type: type, client: client)) }

    func subscriptionRemoved(id: String) { enqueue.yield(.deleteSubscription(id: id)) }

    // MARK: - Messages to other hosts

    /// Sends an event (a worker's publish) to each of `hosts`, once.
    /// Waits until the events forwarded so far have reached the NATS server (a round trip on
    /// the events connection, when any was forwarded since the last wait): acknowledged
    /// delivery counts an event forwarded to another host as handed over from then on.
    func flushForwardedEvents() async {
        let forwarded = eventsForwarded.load(ordering: .relaxed)
        guard forwarded != eventsFlushed.load(ordering: .relaxed) else { return }
        do {
            try await eventConnection.flush(timeout: .seconds(1))
            eventsFlushed.store(forwarded, ordering: .relaxed)
        } catch {
            logger.warning("events forwarded to other hosts not confirmed by the NATS server", metadata: ["error": "\(error)"])
        }
    }

    func forwardEvent(_ message: MessageBuffer, to hosts: [String], topicType: String) {
        eventsForwarded.wrappingAdd(1, ordering: .relaxed)
        let subjects = state.withLock { state in
            hosts.map { host in
                if let subject = state.eventSubjects[host] { return subject }
                let subject = ClusterNames.events(host)
                state.eventSubjects[host] = subject
                return subject
            }
        }
        message.withUnsafeBytes { bytes in
            for (index, subject) in subjects.enumerated() {
                do {
                    try eventConnection.publish(subject, payload: bytes)
                } catch {
                    let count = state.withLock { state in
                        state.forwardFailures += 1
                        return state.forwardFailures
                    }
                    if count == 1 || count % 1000 == 0 {
                        logger.warning("event not sent to another host of the cluster", metadata: [
                            "cluster.peer": "\(hosts[index])", "topic.type": "\(topicType)", "error": "\(error)",
                            "failures": "\(count)",
                        ])
                    }
                }
            }
        }
    }

    /// Sends a request to the host serving its type; returns why it could not, if it could not.
    func forwardRequest(_ bytes: [UInt8], hostRequestID: UInt64, to owner: String, deadline: ContinuousClock.Instant) -> String? {
        guard isConnected else { return "this host's connection to NATS (\(connection.address)) is down" }
        let left = deadline - .now
        let remaining = max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        do {
            try connection.publish(
                ClusterNames.requests(owner), payload: bytes,
                replyTo: ClusterNames.replySubject(host: name, requestID: hostRequestID, waitsMilliseconds: remaining))
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Sends an answer to a request that came from another host.
    func reply(_ message: MessageBuffer, to caller: PeerCaller) {
        do {
            try message.withUnsafeBytes { bytes in try connection.publish(caller.replySubject, payload: bytes) }
        } catch {
            logger.warning("answer to another host's request not sent", metadata: [
                "cluster.peer": "\(caller.host)", "error": "\(error)",
            ])
        }
    }

    /// Sends a control message to the host serving its destination: `host`, or, for a
    /// `clientid=` destination, the host that client's messages came from.
    /// - Returns: false if no host is known for it.
    func forwardControl(_ bytes: UnsafeRawBufferPointer, destination: String, host: String?) -> Bool {
        let target = host ?? state.withLock { state in
            destination.hasPrefix("clientid=") ? state.clientRoutes[String(destination.dropFirst("clientid=".count))] : nil
        }
        guard let target, isConnected else { return false }
        do {
            try connection.publish(ClusterNames.control(target), payload: bytes, headers: [ClusterNames.hostHeader: name])
            return true
        } catch {
            logger.warning("control message not sent to another host", metadata: ["cluster.peer": "\(target)", "error": "\(error)"])
            return false
        }
    }

    // MARK: - Messages from other hosts

    private func handleEvent(_ message: NATSMessage) {
        guard let host else { return }
        let buffer = MessageBuffer(message.payload)
        buffer.withUnsafeBytes { bytes in
            guard case .event(let event)? = try? Envelope.parse(bytes) else {
                logger.warning("malformed event from another host dropped", metadata: ["message.bytes": "\(bytes.count)"])
                return
            }
            host.publish(buffer, event, forwarded: true, logger: logger)
        }
    }

    private func handleRequest(_ message: NATSMessage) {
        guard let host, let replySubject = message.replySubject,
              let (from, _, waits) = ClusterNames.parseReplySubject(replySubject) else { return }
        let caller = PeerCaller(host: from, replySubject: replySubject)
        let deadline = ContinuousClock.now + min(.milliseconds(waits), host.configuration.rpcTimeout)
        message.payload.withUnsafeBytes { bytes in
            guard case .request(let request)? = try? Envelope.parse(bytes) else {
                logger.warning("malformed request from another host dropped", metadata: ["cluster.peer": "\(caller.host)"])
                return
            }
            host.route(bytes, request, from: .peer(caller), deadline: deadline, logger: logger)
        }
    }

    private func handleReply(_ message: NATSMessage) {
        guard let host, let (_, id, _) = ClusterNames.parseReplySubject(message.subject) else { return }
        if message.isNoResponders {
            // The host serving the type is gone (nothing listens on its subject).
            if let request = table.takePendingOnHost(hostRequestID: id), case .host(let owner) = request.responder {
                host.answer(request, error: "Host \(owner), which serves agent type '\(request.target.type)', is not in the cluster any more (no one listens on its NATS subject); the request to \(request.target) was not delivered.")
            }
            return
        }
        message.payload.withUnsafeBytes { bytes in
            guard case .response(let response)? = try? Envelope.parse(bytes), response.requestID == String(id) else {
                logger.warning("malformed answer from another host dropped (or one for another request than its subject's)",
                               metadata: ["request.id": "\(id)"])
                return
            }
            // Only the host the request went to was given this reply subject.
            host.deliver(bytes, response, from: nil, logger: logger)
        }
    }

    private func handleControl(_ message: NATSMessage) {
        guard let from = message.headers[ClusterNames.hostHeader] else { return }
        message.payload.withUnsafeBytes { bytes in
            guard let header = try? ControlPlaneCodec.decodeControlMessageHeader(bytes) else {
                logger.warning("malformed control message from another host dropped", metadata: ["cluster.peer": "\(from)"])
                return
            }
            if header.respondTo.hasPrefix("clientid=") {
                let client = String(header.respondTo.dropFirst("clientid=".count))
                state.withLock { state in
                    if state.clientRoutes.count >= 10_000 { state.clientRoutes.removeAll(keepingCapacity: true) }
                    state.clientRoutes[client] = from
                }
            }
            if case .local(let destination) = table.controlRoute(forDestination: header.destination) {
                _ = destination.send(MessageBuffer(copying: bytes))
                return
            }
            let reason = "no control channel serves destination '\(header.destination)' on host \(name)"
            logger.warning("control message from another host not delivered", metadata: [
                "cluster.peer": "\(from)", "destination": "\(header.destination)", "type": "\(header.typeURL)",
            ])
            if let answer = ControlPlaneCodec.errorResponse(to: header, error: reason, destination: header.respondTo) {
                try? connection.publish(ClusterNames.control(from), payload: answer, headers: [ClusterNames.hostHeader: name])
            }
        }
    }

    private func handleHeartbeat(_ message: NATSMessage) {
        guard let beat = Heartbeat(message.payload) else { return }
        if beat.host == name {
            guard beat.incarnation != incarnation else { return }
            let first = state.withLock { state in
                defer { state.nameClashLogged = true }
                return !state.nameClashLogged
            }
            if first {
                logger.error("another host uses this host's cluster name: give each host its own [cluster] name", metadata: [
                    "cluster.name": "\(name)",
                ])
            }
            return
        }
        if beat.leaving {
            hostGone(beat.host, reason: "it left the cluster", removeEntries: false)
            return
        }
        let restarted = state.withLock { state -> Bool in
            let previous = state.lastHeard[beat.host]?.incarnation
            state.lastHeard[beat.host] = (.now, beat.incarnation)
            return previous != nil && previous != beat.incarnation
        }
        if restarted, let host {
            // Its previous process died: what it was asked will not be answered.
            for request in table.forgetPending(onHost: beat.host) {
                host.answer(request, error: "Host \(beat.host), which serves agent type '\(request.target.type)', restarted before answering the request to \(request.target).")
            }
        }
    }

    // MARK: - Liveness

    /// Says this host is alive, and takes for dead the hosts not heard from within the lease.
    private func beat() {
        guard isConnected else { return }
        try? connection.publish(ClusterNames.heartbeats, payload: Heartbeat(host: name, incarnation: incarnation, leaving: false).encoded)
        let now = ContinuousClock.now
        let known = table.remoteHosts()
        let silent = state.withLock { state -> [String] in
            // A host seen only in the buckets gets a lease from when it was first seen.
            for host in known where state.lastHeard[host] == nil { state.lastHeard[host] = (now, nil) }
            return state.lastHeard.filter { now - $0.value.at > configuration.lease }.map(\.key)
        }
        for host in silent {
            hostGone(host, reason: "no heartbeat within \(configuration.lease)", removeEntries: true)
        }
    }

    /// Agent type `type` moved from host `from` to host `to` (its worker failed over, or
    /// another took it over): what was sent to `from` for it will not be answered there — the
    /// worker is gone from it — so its callers get an error now rather than at the lease's end.
    private func typeMoved(_ type: String, from: String, to: String) {
        for request in table.forgetPending(onHost: from, agentType: type) {
            host?.answer(request, error: "The worker serving \(request.target) moved from host \(from) to host \(to) before answering; the request may or may not have been handled.")
        }
    }

    /// Forgets `host`: answers what it had not answered, drops its types and subscriptions and,
    /// when it died, removes its entries from the buckets.
    private func hostGone(_ gone: String, reason: String, removeEntries: Bool) {
        let (claims, subscriptionKeys, sharedKeys) = state.withLock { state in
            state.lastHeard[gone] = nil
            state.eventSubjects[gone] = nil
            let claims = state.remoteClaims.filter { $0.value.host == gone }
            for type in claims.keys { state.remoteClaims[type] = nil }
            let keys = state.remoteSubscriptionKeys.removeValue(forKey: gone) ?? [:]
            let shared = state.remoteSharedKeys.removeValue(forKey: gone) ?? [:]
            return (claims.map { (ClusterNames.token($0.key), $0.value.revision) }, keys.map { ($0.key, $0.value) },
                    shared.map { ($0.key, $0.value) })
        }
        let (unanswered, sharedChanges) = table.forgetHost(gone)
        for shared in sharedChanges { host?.announce(shared) }
        for request in unanswered {
            host?.answer(request, error: "Host \(gone), which serves agent type '\(request.target.type)', left the cluster (\(reason)) before answering the request to \(request.target).")
        }
        logger.log(level: removeEntries ? .warning : .info, "another host is out of the cluster", metadata: [
            "cluster.peer": "\(gone)", "reason": "\(reason)", "agent.types": "\(claims.count)",
            "subscriptions": "\(subscriptionKeys.count)", "unanswered": "\(unanswered.count)",
        ])
        if removeEntries {
            let entries = claims.map { (agentTypes, $0.0, $0.1) } + subscriptionKeys.map { (subscriptions, $0.0, $0.1) }
                + sharedKeys.map { (sharedMembers, $0.0, $0.1) }
            if !entries.isEmpty { enqueue.yield(.removeHost(gone, entries: entries)) }
        }
    }

    private func connectionEvent(_ event: NATSConnection.Event) {
        switch event {
        case .disconnected:
            let wasConnected = state.withLock { state in
                defer { state.connected = false }
                return state.connected && !state.leaving
            }
            guard wasConnected else { return }
            let unanswered = table.drainPendingOnHosts()
            for request in unanswered {
                host?.answer(request, error: "This host lost its connection to NATS (\(connection.address)); the answer from the host serving \(request.target) cannot arrive.")
            }
            logger.warning("cluster connection lost: serving this host's workers only until NATS is back; requests to other hosts' agent types are answered with an error", metadata: [
                "nats": "\(connection.address)", "unanswered": "\(unanswered.count)",
            ])
        case .reconnected(let url):
            state.withLock { state in
                state.connected = true
                let now = ContinuousClock.now
                for host in state.lastHeard.keys { state.lastHeard[host]?.at = now }
            }
            logger.notice("cluster connection back: publishing this host's agent types and subscriptions again", metadata: ["nats": "\(url)"])
            enqueue.yield(.resynchronise)
        case .closed:
            let leaving = state.withLock { state in
                state.connected = false
                return state.leaving
            }
            if !leaving {
                logger.error("cluster connection closed for good: this host serves its own workers only", metadata: ["nats": "\(connection.address)"])
            }
        case .error(let error):
            logger.warning("cluster connection error", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - What the other hosts serve

    private func agentTypeChanged(_ event: KeyValueWatch.Event) {
        guard case .entry(let entry) = event, let type = ClusterNames.text(ofToken: Substring(entry.key)) else { return }
        guard entry.operation == .put, let claim = TypeClaim(entry.value) else {
            let (removed, ours) = state.withLock { ($0.remoteClaims.removeValue(forKey: type), $0.claims[type] != nil) }
            if let removed { table.removeRemoteOwner(agentType: type, host: removed.host) }
            // Another host removed a claim this host still holds: it took this host for dead.
            if ours { evicted("agent type \(type)") }
            return
        }
        if claim.host == name {
            // This host's own claim (or a previous process's, being removed).
            if let removed = state.withLock({ $0.remoteClaims.removeValue(forKey: type) }) {
                table.removeRemoteOwner(agentType: type, host: removed.host)
            }
            return
        }
        let (lostClaim, previousHost) = state.withLock { state in
            let previous = state.remoteClaims[type]?.host
            state.remoteClaims[type] = (claim.host, entry.revision)
            if state.lastHeard[claim.host] == nil { state.lastHeard[claim.host] = (.now, nil) }
            return (state.claims.removeValue(forKey: type), previous)
        }
        if let previousHost, previousHost != claim.host {
            typeMoved(type, from: previousHost, to: claim.host)
        }
        if let local = changingRecipients({ table.setRemoteOwner(agentType: type, host: claim.host, client: claim.client) }) {
            logger.warning("agent type now held on another host: this host's client no longer serves it", metadata: [
                "agent.type": "\(type)", "client.id": "\(local)", "holder.client": "\(claim.client)", "holder.host": "\(claim.host)",
                "claimed.here": "\(lostClaim != nil)",
            ])
        }
    }

    private func subscriptionChanged(_ event: KeyValueWatch.Event) {
        guard case .entry(let entry) = event, let (owner, id) = ClusterNames.parseSubscriptionKey(entry.key) else { return }
        guard owner != name else {
            if entry.operation != .put, table.localSubscriptions().contains(where: { $0.id == id }) { evicted("subscription \(id)") }
            return
        }
        guard entry.operation == .put else {
            state.withLock { _ = $0.remoteSubscriptionKeys[owner]?.removeValue(forKey: entry.key) }
            table.removeRemoteSubscription(id: id, host: owner)
            return
        }
        let subscription = entry.value.withUnsafeBytes { try? ControlPlaneCodec.decodeAddSubscriptionRequest($0) }
        guard let subscription = subscription ?? nil else {
            logger.warning("malformed subscription of another host ignored", metadata: ["cluster.peer": "\(owner)", "kv.key": "\(entry.key)"])
            return
        }
        state.withLock { state in
            state.remoteSubscriptionKeys[owner, default: [:]][entry.key] = entry.revision
            if state.lastHeard[owner] == nil { state.lastHeard[owner] = (.now, nil) }
        }
        changingRecipients { table.setRemoteSubscription(subscription, host: owner) }
    }

    /// A change of the other hosts' tables that may give events kept for late subscribers new
    /// recipients (``AgentHost/changingRecipients(_:)``).
    private func changingRecipients<T>(_ change: () -> T) -> T {
        guard let host else { return change() }
        return host.changingRecipients(change)
    }

    private func sharedMemberChanged(_ event: KeyValueWatch.Event) {
        guard case .entry(let entry) = event, let (type, owner, client) = ClusterNames.parseSharedMemberKey(entry.key) else { return }
        guard owner != name else {
            if entry.operation != .put, table.localSharedMembers()[type]?.contains(client) == true {
                evicted("worker \(client) of shared type \(type)")
            }
            return
        }
        let present = entry.operation == .put
        state.withLock { state in
            if present {
                state.remoteSharedKeys[owner, default: [:]][entry.key] = entry.revision
                if state.lastHeard[owner] == nil { state.lastHeard[owner] = (.now, nil) }
            } else {
                _ = state.remoteSharedKeys[owner]?.removeValue(forKey: entry.key)
            }
        }
        if let changed = table.setRemoteSharedMember(agentType: type, client: client, host: owner, present: present) {
            host?.announce(changed)
        }
    }

    /// Another host removed an entry this host still has (it took this host for dead: its
    /// heartbeats stalled for a lease without the connection dropping): publish them again.
    private func evicted(_ what: String) {
        let first = state.withLock { state in
            defer { state.resynchronisationQueued = true }
            return !state.resynchronisationQueued
        }
        guard first else { return }
        logger.warning("another host removed this host's entries (it took this host for dead): publishing them again", metadata: [
            "removed": "\(what)",
        ])
        enqueue.yield(.resynchronise)
    }

    // MARK: - Key-value writes

    private func runOperations() async {
        for await operation in operations {
            switch operation {
            case .claim(let type, let client, let continuation):
                continuation.resume(returning: await performClaim(type: type, client: client))
            case .barrier(let continuation):
                continuation.resume()
            case .release(let type, let client):
                let claim = state.withLock { state -> UInt64? in
                    guard let claim = state.claims[type], claim.client == client else { return nil }
                    state.claims[type] = nil
                    return claim.revision
                }
                if let claim { try? await agentTypes.delete(ClusterNames.token(type), ifRevision: claim) }
            case .putSubscription(let subscription):
                guard canWrite else { continue }
                do {
                    _ = try await subscriptions.put(
                        ClusterNames.subscriptionKey(host: name, id: subscription.id),
                        value: ControlPlaneCodec.encodeAddSubscriptionRequest(subscription))
                } catch {
                    logger.warning("subscription not published to the cluster (published again when NATS is back)", metadata: [
                        "subscription": "\(subscription)", "error": "\(error)",
                    ])
                }
            case .deleteSubscription(let id):
                guard canWrite else { continue }
                try? await subscriptions.delete(ClusterNames.subscriptionKey(host: name, id: id))
            case .resynchronise:
                state.withLock { $0.resynchronisationQueued = false }
                await resynchronise()
            case .putSharedMember(let type, let client):
                guard canWrite else { continue }
                do {
                    _ = try await sharedMembers.put(ClusterNames.sharedMemberKey(type: type, host: name, client: client), value: [])
                } catch {
                    logger.warning("shared agent type's worker not published to the cluster (published again when NATS is back)", metadata: [
                        "agent.type": "\(type)", "client.id": "\(client)", "error": "\(error)",
                    ])
                }
            case .deleteSharedMember(let type, let client):
                guard canWrite else { continue }
                try? await sharedMembers.delete(ClusterNames.sharedMemberKey(type: type, host: name, client: client))
            case .removeHost(let gone, let entries):
                // Every host that saw it die tries; the revision lets one succeed, and not remove
                // what the host (or another) wrote since.
                for (bucket, key, revision) in entries { try? await bucket.delete(key, ifRevision: revision) }
                logger.debug("entries of a host out of the cluster removed", metadata: ["cluster.peer": "\(gone)"])
            }
        }
    }

    private func performClaim(type: String, client: String) async -> ClaimResult {
        guard canWrite else {
            return .deferred(isConnected ? "the host is leaving the cluster" : "this host's connection to NATS (\(connection.address)) is down")
        }
        let key = ClusterNames.token(type)
        let mine = TypeClaim(host: name, client: client, incarnation: incarnation)
        do {
            for _ in 0..<3 {
                do {
                    let revision = try await agentTypes.create(key, value: mine.encoded)
                    state.withLock { $0.claims[type] = (client, revision) }
                    return await keptIfStillServed(type, client: client, key: key, revision: revision)
                } catch let error as NATSError where error.code == .keyExists {
                    guard let entry = try await agentTypes.get(key), entry.operation == .put,
                          let holder = TypeClaim(entry.value) else { continue }
                    if holder == mine {
                        state.withLock { $0.claims[type] = (client, entry.revision) }
                        return .claimed
                    }
                    // The same client moved here, a previous process of this host left it, or its
                    // host is out of the cluster: take it over.
                    let holderAlive = holder.host != name && state.withLock { state in
                        state.lastHeard[holder.host] != nil || ContinuousClock.now - state.joined < configuration.lease
                    }
                    guard holder.client == client || holder.host == name || !holderAlive else { return .heldBy(holder) }
                    do {
                        let revision = try await agentTypes.update(key, value: mine.encoded, ifRevision: entry.revision)
                        state.withLock { $0.claims[type] = (client, revision) }
                        if holder.host != name { typeMoved(type, from: holder.host, to: name) }
                        if case .deferred(let reason) = await keptIfStillServed(type, client: client, key: key, revision: revision) {
                            return .deferred(reason)
                        }
                        if holder.host != name {
                            logger.info("agent type taken over from another host", metadata: [
                                "agent.type": "\(type)", "client.id": "\(client)", "previous.host": "\(holder.host)",
                                "previous.client": "\(holder.client)",
                            ])
                        }
                        return .claimed
                    } catch let error as NATSError where error.code == .wrongRevision {
                        continue
                    }
                }
            }
            return .deferred("the claim of agent type \(type) kept changing under this host")
        } catch {
            return .deferred("\(error)")
        }
    }

    /// A claim just written, kept if `client` still holds `type` here; removed if the worker
    /// left while it was being made (its departure found nothing to release yet).
    private func keptIfStillServed(_ type: String, client: String, key: String, revision: UInt64) async -> ClaimResult {
        guard table.localAgentTypes()[type] != client else { return .claimed }
        state.withLock { _ = $0.claims.removeValue(forKey: type) }
        try? await agentTypes.delete(key, ifRevision: revision)
        return .deferred("the worker left while its claim was being made")
    }

    /// Makes the buckets say what this host serves now: claims its types (again), writes its
    /// subscriptions, removes what it no longer has.
    private func resynchronise() async {
        guard isConnected else { return }
        // A NATS server that came back without its JetStream store has lost the buckets: make
        // them again (the watches make their consumers once they are there).
        for bucket in [agentTypes, subscriptions, sharedMembers] {
            _ = try? await connection.createOrBindBucket(Self.bucketConfiguration(bucket.name))
        }
        let localTypes = table.localAgentTypes()
        for (type, client) in localTypes.sorted(by: { $0.key < $1.key }) {
            let claimed = state.withLock { $0.claims[type]?.client == client }
            if claimed {
                // Still ours? (A lease may have run out while NATS was away.)
                if let entry = try? await agentTypes.get(ClusterNames.token(type)), entry.operation == .put,
                   TypeClaim(entry.value) == TypeClaim(host: name, client: client, incarnation: incarnation) { continue }
                state.withLock { _ = $0.claims.removeValue(forKey: type) }
            }
            switch await performClaim(type: type, client: client) {
            case .claimed, .deferred:
                break
            case .heldBy(let holder):
                // The bucket's claim decides: the watch hands the type to its holder here too.
                logger.error("agent type claimed on another host while this host was cut off from NATS: the other claim stands, and this host's client no longer receives the type's messages", metadata: [
                    "agent.type": "\(type)", "client.id": "\(client)", "holder.client": "\(holder.client)", "holder.host": "\(holder.host)",
                ])
            }
        }
        // Claims of this host the store still has for types it no longer serves (a release
        // whose delete failed), and those this process's table does not know.
        if let keys = try? await agentTypes.keys() {
            for key in keys {
                guard let type = ClusterNames.text(ofToken: Substring(key)), localTypes[type] == nil,
                      let entry = try? await agentTypes.get(key), entry.operation == .put,
                      let claim = TypeClaim(entry.value), claim.host == name else { continue }
                try? await agentTypes.delete(key, ifRevision: entry.revision)
            }
        }
        let stale = state.withLock { state in
            state.claims.filter { localTypes[$0.key] != $0.value.client }.map { ($0.key, $0.value.revision) }
        }
        for (type, revision) in stale {
            state.withLock { _ = $0.claims.removeValue(forKey: type) }
            try? await agentTypes.delete(ClusterNames.token(type), ifRevision: revision)
        }
        let local = table.localSubscriptions()
        let localKeys = Set(local.map { ClusterNames.subscriptionKey(host: name, id: $0.id) })
        let prefix = ClusterNames.token(name) + "."
        if let keys = try? await subscriptions.keys() {
            for key in keys where key.hasPrefix(prefix) && !localKeys.contains(key) {
                try? await subscriptions.delete(key)
            }
        }
        for subscription in local {
            _ = try? await subscriptions.put(
                ClusterNames.subscriptionKey(host: name, id: subscription.id),
                value: ControlPlaneCodec.encodeAddSubscriptionRequest(subscription))
        }
        let localShared = Set(table.localSharedMembers().flatMap { type, clients in
            clients.map { ClusterNames.sharedMemberKey(type: type, host: name, client: $0) }
        })
        if let keys = try? await sharedMembers.keys() {
            for key in keys where ClusterNames.parseSharedMemberKey(key)?.host == name && !localShared.contains(key) {
                try? await sharedMembers.delete(key)
            }
        }
        for key in localShared { _ = try? await sharedMembers.put(key, value: []) }
    }
}
