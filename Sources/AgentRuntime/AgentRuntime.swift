import AgentCluster
import AgentClusterState
import AgentCore
import AgentHost
import AgentMetrics
import AgentPluginABI
import AgentState
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// The runtime: loads the agent plugins of a directory, registers their agent types and
/// subscriptions with a host, and dispatches the host's events and RPCs to their handlers.
///
/// With no host address it runs an embedded ``AgentHost`` in the same process, listening
/// where the configuration says, so that other workers (AutoGen's Python ones included) can
/// join.
///
/// Its parts, in the order a message from the host meets them: ``HostConnection`` (the
/// stream), `LocalRouter` (which local agents it reaches), `AgentInstance` (each agent's
/// mailbox, one handler at a time), `WorkerPool` (the threads), `HandlerInvoker` (the call
/// into the plugin and the answer). What plugins send goes out through `Outbox` and
/// `OutboundRequests`; `Reloader`, `HostRegistrations` and `PluginRetirement` keep the plugins
/// in service in step with the plugin directory.
public final class AgentRuntime: Sendable {
    /// The parts made when the runtime starts (they need the host's address).
    private struct Running: Sendable {
        var connection: HostConnection
        var context: DispatchContext
        var router: LocalRouter
        var reloader: Reloader
        /// Serves the state protocol's requests (`OpenControlChannel`).
        var control: HostControlChannel
        /// Serves the reloader's requests.
        var reloading: Task<Void, Never>
        var sweeper: Task<Void, Never>?
        var residencySweeper: Task<Void, Never>?
    }

    private struct State: ~Copyable {
        /// The NATS connection of a `[state] store = nats` store, closed at shutdown.
        var stateConnection: NATSConnection?
        var embeddedHost: AgentHost?
        var metricsListener: MetricsListener?
        var running: Running?
        var stopped = false
    }

    public let configuration: Configuration
    let logger: Logger
    let workers: WorkerPool
    /// The handles its plugins receive.
    let handles: HandleSpace
    let loader: PluginLoader
    let retirement: PluginRetirement
    /// What answers the control channel's state requests instead of the runtime's agents,
    /// when given at init (the control channel's tests); nil: the agents (``stateControl``).
    let stateRequestsOverride: (any AgentStateControl)?
    /// The runtime's metrics (nil: it keeps none).
    let metrics: RuntimeMetrics?
    private let state = Mutex(State())

    public convenience init(configuration: Configuration, logger: Logger) throws {
        try self.init(configuration: configuration, logger: logger, stateRequestsAnsweredBy: nil)
    }

    init(configuration: Configuration, logger: Logger, stateRequestsAnsweredBy override: (any AgentStateControl)?) throws {
        self.configuration = configuration
        self.logger = logger
        stateRequestsOverride = override
        workers = WorkerPool(threads: configuration.workers, maxThreads: configuration.maxWorkers)
        handles = HandleSpace()
        loader = try PluginLoader(references: handles.plugins, logger: logger)
        retirement = PluginRetirement(loader: loader, logger: logger)
        metrics = (configuration.metricsRegistry ?? configuration.metricsListen.map { _ in MetricsRegistry() })
            .map(RuntimeMetrics.init)
    }

    /// The plugins in service, by file name order.
    public var plugins: [LoadedPlugin] { state.withLock { $0.running?.reloader }?.current ?? [] }

    /// Rescans the plugin directory now (what SIGHUP does): loads new files, swaps changed
    /// ones, withdraws removed ones. Returns when the rescan is done.
    public func rescan() async {
        await state.withLock { $0.running?.reloader }?.rescan()
    }

    /// For benchmarks: feeds `message` (an encoded `agents.Message`) exactly as if it had
    /// arrived from the host on the connection — the same `LocalRouter.receive` path: decoded,
    /// routed to the agents it reaches and queued in their mailboxes, on the calling thread;
    /// the handlers then run on the worker pool. Answers (to a request) go to the host as
    /// usual. Returns once the message is queued, not handled.
    @_spi(Benchmarks) public func deliverFromHost(_ message: MessageBuffer) {
        state.withLock { $0.running?.router }?.receive(message)
    }

    /// The parts ``reconfigure(_:)`` changes, once started (nil before ``start()``).
    var reconfigurableParts: (router: LocalRouter, requests: OutboundRequests, reloader: Reloader)? {
        state.withLock { $0.running.map { ($0.router, $0.context.requests, $0.reloader) } }
    }

    /// The address of the host this runtime is connected to.
    public var hostAddress: String? { state.withLock { $0.running?.connection.address } }

    /// Serves the runtime's metrics, once started.
    var metricsListener: MetricsListener? { state.withLock { $0.metricsListener } }

    /// The embedded host, when the runtime runs one.
    public var embeddedHost: AgentHost? { state.withLock { $0.embeddedHost } }

    /// Connects (starting the embedded host first if configured so), loads every plugin of
    /// the directory and registers their agent types and subscriptions.
    ///
    /// A plugin that fails to load or register is refused with a log line naming the file
    /// and the reason; the others serve.
    /// - Throws: if the embedded host cannot listen or join its cluster, or the plugin directory
    ///   cannot be read.
    public func start() async throws {
        let metricsListener = try makeMetricsListener()
        state.withLock { $0.metricsListener = metricsListener }
        let states = try await openStateStore()
        let (address, authToken) = try await startEmbeddedHostIfNeeded()
        let connection = HostConnection(
            address: address, clientID: configuration.clientID, maxMessageBytes: configuration.maxMessageBytes,
            logger: logger,
            reconnection: .init(
                enabled: true, initialBackoff: configuration.reconnectInitialBackoff,
                maxBackoff: configuration.reconnectMaxBackoff, bufferLimit: configuration.publishBufferLimit),
            credentials: configuration.hostCredentials, authToken: authToken, queues: workers.completions,
            acknowledgedDelivery: configuration.acknowledgedDelivery)
        let outbox = Outbox(connection: connection)
        let requests = OutboundRequests(outbox: outbox, retirement: retirement, timeout: configuration.rpcTimeout)
        let invoker = HandlerInvoker(
            outbox: outbox, calls: handles.calls, retirement: retirement,
            handlerTimeout: configuration.handlerTimeout, logger: logger)
        let context = DispatchContext(
            workers: workers, invoker: invoker, outbox: outbox, requests: requests, retirement: retirement,
            states: states, metrics: metrics, skippedEvents: configuration.skippedEvents, logger: logger)
        let router = LocalRouter(
            context: context, handles: handles.agents, mailboxLimit: configuration.mailboxLimit,
            residency: .init(
                idle: configuration.idleAgentTimeout, maxResident: configuration.maxResidentAgents,
                maxBytes: configuration.maxResidentBytes),
            clientID: configuration.clientID, logger: logger)
        let registrations = HostRegistrations(connection: connection, clientID: configuration.clientID, logger: logger)
        let reloader = Reloader(
            settings: .init(
                directory: configuration.pluginDirectory, probe: configuration.probe,
                pluginSettings: configuration.pluginSettings, maxRetiredSwiftImages: configuration.maxRetiredSwiftImages,
                probed: configuration.pluginProbed, disabledPlugins: configuration.disabledPlugins),
            loader: loader, router: router, registrations: registrations, context: context, logger: logger)
        let reloading = Task { await reloader.run() }
        metrics?.observe(.init(router: router, states: states, reloader: reloader, connection: connection))
        // The one place the state protocol's AgentStateControl is chosen: the agents themselves.
        let stateRequests = StateRequestServer(
            agents: stateRequestsOverride ?? router, servesAgentType: { router.servedTypes.contains($0) },
            timeout: configuration.handlerTimeout, maxMessageBytes: configuration.maxMessageBytes, logger: logger)
        let statusRequests = StatusRequestServer(
            status: { [weak self] in self?.status() ?? .null }, maxMessageBytes: configuration.maxMessageBytes,
            logger: logger)
        let control = HostControlChannel(
            connection: connection, requests: stateRequests, status: statusRequests,
            backoff: .init(initialBackoff: configuration.reconnectInitialBackoff, maxBackoff: configuration.reconnectMaxBackoff),
            logger: logger)
        state.withLock {
            $0.running = Running(
                connection: connection, context: context, router: router, reloader: reloader, control: control,
                reloading: reloading)
        }
        // A list of hosts (`A, B, C`): start with the first that answers.
        await connection.chooseReachableHost()
        await connection.negotiateDelivery()
        try connection.open(.init(
            onMessage: { router.receive($0) },
            onDisconnect: { status in
                // RPCs our agents sent will never be answered on a new stream: answer them now.
                requests.failAll(reason: "The connection to the host was lost (\(status)).")
            },
            restore: { [metrics] in
                try await reloader.restoreRegistrations()
                metrics?.reconnected()
            }))
        control.open()
        logger.info("runtime connected", metadata: [
            "host.address": "\(address)", "client.id": "\(configuration.clientID)",
            "host.embedded": "\(configuration.hostAddress == nil || configuration.hostIsSupervisorsEmbeddedHost)",
            "host.transport": "\(configuration.hostCredentials)", "host.auth": "\(authToken == nil ? "none" : "bearer token")",
        ])
        guard FileManager.default.fileExists(atPath: configuration.pluginDirectory) else {
            throw RuntimeError("the plugin directory \(configuration.pluginDirectory) does not exist")
        }
        await reloader.rescan()
        await control.waitUntilAttached(timeout: .seconds(5))
        if configuration.watchPlugins { reloader.watch() }
        let stuckHandlers = StuckHandlerWatch(
            workers: workers, invoker: invoker, action: configuration.stuckAction, logger: logger)
        let sweeper = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                let now = ContinuousClock.now
                requests.expire(now: now)
                invoker.expire(now: now)
                stuckHandlers.check()
            }
        }
        let interval = router.residency.tickInterval
        let residencySweeper = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                router.sweep()
            }
        }
        state.withLock {
            $0.running?.sweeper = sweeper
            $0.running?.residencySweeper = residencySweeper
        }
    }

    /// The agents' state store, when one is configured.
    private func openStateStore() async throws -> AgentStates? {
        if let options = configuration.stateNATS {
            var named = options
            named.name = named.name ?? "agentd runtime \(configuration.clientID) state"
            let store: NATSStateStore
            do {
                let connection = try await NATSConnection.connect(named, logger: logger)
                do {
                    store = try await NATSStateStore.open(connection: connection)
                } catch {
                    await connection.close()
                    throw error
                }
            } catch {
                throw RuntimeError("the state store cannot be opened: \(error) ([state] store = nats, [state] nats)")
            }
            state.withLock { $0.stateConnection = store.connection }
            logger.info("state store open", metadata: [
                "state.store": "\(store.name)", "agents.idle": "\(configuration.idleAgentTimeout)",
                "agents.max_resident": "\(configuration.maxResidentAgents)",
            ])
            // Each write is a round trip to NATS: on the writer thread, never inline.
            return AgentStates(store: store, name: store.name, inlineCommits: false, logger: logger)
        }
        guard let path = configuration.stateStorePath else { return nil }
        do {
            let store = try SQLiteStateStore(path: path, durability: configuration.stateDurability)
            logger.info("state store open", metadata: [
                "state.path": "\(path)", "state.sync": "\(configuration.stateDurability.rawValue)",
                "agents.idle": "\(configuration.idleAgentTimeout)", "agents.max_resident": "\(configuration.maxResidentAgents)",
            ])
            return AgentStates(
                store: store, name: path, inlineCommits: configuration.stateDurability == .normal,
                checkpointLatency: metrics?.checkpointLatency, logger: logger)
        } catch {
            throw RuntimeError("\(error) ([state] path; [state] store = none runs without one)")
        }
    }

    /// What the runtime's agents and their state store did so far.
    public struct AgentStatistics: Sendable, Hashable {
        /// Agents in memory now (each with its mailbox; a plugin instance once activated).
        public var resident: Int
        /// Plugin instances created (and restored from the store where one was stored).
        public var activations: Int
        /// Agents retired: idle, or least recently used past `maxResidentAgents`.
        public var deactivations: Int
        /// Commits of the state store, and checkpoints written in them (group commit: several
        /// per commit under load); checkpoints that failed.
        public var commits: Int
        public var checkpoints: Int
        public var checkpointFailures: Int
        /// Bytes the resident agents hold as the runtime counts them (their agent types and
        /// keys, a fixed overhead each, and the size of the state they hold): what
        /// ``Configuration/maxResidentBytes`` bounds.
        public var residentBytes: Int = 0
    }

    /// What the runtime's agents and their state store did so far (zero before ``start()``).
    public var agentStatistics: AgentStatistics {
        guard let running = state.withLock({ $0.running }) else {
            return AgentStatistics(resident: 0, activations: 0, deactivations: 0, commits: 0, checkpoints: 0, checkpointFailures: 0)
        }
        let states = running.context.states
        let (commits, checkpoints) = states?.writer.counts ?? (0, 0)
        return AgentStatistics(
            resident: running.router.residentCount,
            activations: states?.activations.load(ordering: .relaxed) ?? 0,
            deactivations: running.router.retiredCount,
            commits: commits, checkpoints: checkpoints, checkpointFailures: states?.failureCount ?? 0,
            residentBytes: running.router.residentBytes)
    }

    /// Resident agents of shared agent types (keys placed on this runtime), by type.
    public var sharedKeys: [String: Int] { state.withLock { $0.running?.router }?.sharedKeyCounts ?? [:] }

    /// Shared agent types → the workers (client ids) serving them, as the host last said.
    public var sharedTypeMembers: [String: [String]] { state.withLock { $0.running?.router }?.placements ?? [:] }

    /// The ids of the resident agents (for tests and status).
    public var residentAgents: [AgentID] { state.withLock { $0.running?.router }?.agents.map(\.id) ?? [] }

    /// AutoGen's state requests for this runtime's agents (the control channel's).
    var stateControl: (any AgentStateControl)? { state.withLock { $0.running?.router } }

    /// Starts the embedded host when no host address is configured; returns the address to
    /// connect to and the token to present.
    private func startEmbeddedHostIfNeeded() async throws -> (address: String, token: String?) {
        if let configured = configuration.hostAddress { return (configured, configuration.authToken) }
        if configuration.embeddedHost.credentials.isTLS, !configuration.hostCredentials.isTLS {
            throw RuntimeError(
                "the embedded host listens with \(configuration.embeddedHost.credentials), but the runtime would connect to it with plaintext: give the runtime TLS credentials that trust the host's certificate")
        }
        // One completion queue for the process: the host's calls run on the handler threads
        // too (gRPC's poller hands wake-ups between threads when a process has several).
        var hostConfiguration = configuration.embeddedHost
        // One scrape shows both: the host's metrics go to the runtime's registry unless it has its own.
        if hostConfiguration.metricsRegistry == nil { hostConfiguration.metricsRegistry = metrics?.registry }
        let host = try await AgentHost.start(configuration: hostConfiguration, logger: logger, queues: workers.completions)
        state.withLock { $0.embeddedHost = host }
        return (Self.address(connectingTo: host, tls: configuration.hostCredentials.isTLS),
                configuration.authToken ?? configuration.embeddedHost.authTokens.first)
    }

    /// Where the runtime reaches its embedded host: its address, or, with TLS to a host
    /// listening on every interface (`0.0.0.0`, `[::]`), `localhost` on its port: a name its
    /// certificate can carry (none names the wildcard address).
    public static func address(connectingTo host: AgentHost, tls: Bool) -> String {
        let listenHost = host.configuration.listen.split(separator: ":").dropLast().joined(separator: ":")
        guard tls, ["0.0.0.0", "[::]", "::", ""].contains(listenHost) else { return host.address }
        return "localhost:\(host.port)"
    }

    /// How long shutdown waits, after the grace period, for handler threads to come back
    /// before it leaves them to handlers that do not return.
    public static let shutdownMargin: Duration = .seconds(2)

    /// Shuts down gracefully: stops intake (new requests are answered with an error), lets
    /// running and queued handlers finish within ``Configuration/shutdownGracePeriod``, answers
    /// whatever is left with an error, then closes the connection, unloads the plugins and
    /// stops the embedded host.
    ///
    /// It returns within the grace period plus ``shutdownMargin`` (plus the time the connection
    /// and the embedded host take to close) whatever the plugins do: a handler that still has
    /// not returned then keeps its thread, its agent is not destroyed and its plugin stays
    /// loaded (never unloaded under a running handler).
    public func shutdown() async {
        let (running, host, first) = state.withLock { state in
            defer { state.stopped = true }
            return (state.running, state.embeddedHost, !state.stopped)
        }
        guard first else { return }
        var plugins: [LoadedPlugin] = []
        if let running {
            // 1. Intake stops: new requests are answered with an error, new events dropped.
            running.router.closeIntake()
            running.control.closeIntake()
            logger.info("runtime shutting down: intake closed, letting handlers finish", metadata: [
                "grace": "\(configuration.shutdownGracePeriod)",
            ])
            // 2. What is running or queued may finish within the grace period...
            let drained = await running.router.waitUntilIdle(deadline: .now + configuration.shutdownGracePeriod)
            // 3. ...and whatever is left is answered, never left hanging. (Queued first:
            // answering a pending call frees its agent, which would run the next.)
            if !drained {
                let reason = "The runtime is shutting down; the request was not finished."
                let queued = running.router.abandonQueued(reason: reason)
                let pending = running.context.invoker.abandonAll(reason: reason)
                logger.warning("handlers still busy at the end of the grace period were answered with an error", metadata: [
                    "pending": "\(pending)", "queued": "\(queued)",
                ])
            }
            running.sweeper?.cancel()
            running.residencySweeper?.cancel()
            // Checkpoints still being written are committed and their answers sent.
            running.context.states?.stop()
            running.control.close()
            // 4. The connection (the answers above go out first; it also cancels registration
            // calls a reconnection may be waiting in, which the reloader would otherwise wait for).
            await running.connection.close()
            plugins = running.reloader.stop()
            await running.reloading.value
        }
        if let stateConnection = state.withLock({ $0.stateConnection }) { await stateConnection.close() }
        // The embedded host's calls complete on the handler threads' queue: it stops first.
        await host?.shutdown()
        // Threads still in a handler after the grace period get `shutdownMargin` more to come
        // back; one that does not (a handler that never returns) is left to it: its agent is not
        // destroyed and its plugin not unloaded (unmapping code a thread runs in would crash
        // the process) — the process ends with it.
        let stuck = workers.stop(waitingUpTo: Self.shutdownMargin).compactMap { $0 as? AgentInstance }
        let busyPlugins = stuck.compactMap(\.runningPlugin)
        if !stuck.isEmpty {
            logger.error("handlers still running at the end of shutdown: their plugins stay loaded, their threads are left to them", metadata: [
                "handlers": "\(stuck.map { "agent \($0.id.clipped) of plugin \($0.runningPlugin.map { "\($0.name) \($0.version)" } ?? "?")" })",
                "grace": "\(configuration.shutdownGracePeriod)", "margin": "\(Self.shutdownMargin)",
            ])
        }
        if let running {
            running.context.requests.failAll(reason: "The runtime is shutting down.")
            running.router.destroyAgents(sparing: stuck)
        }
        for plugin in plugins where !busyPlugins.contains(where: { $0 === plugin }) { loader.unload(plugin) }
        state.withLock { $0.metricsListener.take() }?.stop()
        metrics?.close()
        retirement.unloadIdle()
        loader.removeShadowDirectory()
        handles.close()
        logger.info("runtime stopped")
    }
}

/// A runtime start-up failure, in words a user can act on.
public struct RuntimeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
