import AgentCore
import AgentHost
import AgentPluginABI
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
public final class AgentRuntime: Sendable {
    public struct Configuration: Sendable {
        /// The host to join (`HOST:PORT`); nil runs an embedded host.
        public var hostAddress: String?
        /// The embedded host's settings (used when ``hostAddress`` is nil).
        public var embeddedHost: AgentHost.Configuration
        /// This runtime's `client-id` (a fresh UUID by default).
        public var clientID: String
        /// How long an RPC a plugin sends waits for its answer.
        public var rpcTimeout: Duration
        /// Handler threads.
        public var workers: Int
        /// The plugin directory.
        public var pluginDirectory: String
        /// Watch the directory and reload plugins as files come, change and go.
        public var watchPlugins: Bool
        /// Check each plugin in a probe process before loading it (nil: load directly).
        public var probe: PluginProbe?
        /// How long shutdown lets running and queued handlers finish.
        public var shutdownGracePeriod: Duration
        /// How many retired versions of Swift plugins may stay mapped (they can never be
        /// unloaded); a Swift replacement past this is refused until a restart.
        public var maxRetiredSwiftImages: Int
        /// Publishes kept while the host is unreachable (then refused, counted and logged).
        public var publishBufferLimit: Int
        /// Messages that may wait for one agent; past it, RPCs to it are answered with an
        /// error and events dropped (counted and logged).
        public var mailboxLimit: Int
        /// How long a handler may leave a message pending before the runtime answers it with
        /// an error and gives the agent its next message.
        public var handlerTimeout: Duration
        /// Reconnection backoff: from the initial wait, doubling, up to the cap (±20 % jitter).
        public var reconnectInitialBackoff: Duration
        public var reconnectMaxBackoff: Duration
        /// `[plugin.NAME]` settings by plugin name.
        public var pluginSettings: [String: [String: String]]
        public var maxMessageBytes: Int
        /// How the runtime connects to its host: plaintext (AutoGen's hosts speak only that) or
        /// TLS, with a client certificate for a host that requires one. To its own embedded
        /// host too: when that host listens with TLS, these must trust its certificate.
        public var hostCredentials: ChannelCredentials
        /// The token sent as `authorization: Bearer <token>` on every call to the host. Nil
        /// with an embedded host that requires tokens: the first of its tokens.
        public var authToken: String?

        public init(
            hostAddress: String? = nil,
            embeddedHost: AgentHost.Configuration = .init(),
            clientID: String = UUID().uuidString.lowercased(),
            rpcTimeout: Duration = .seconds(60),
            workers: Int = ProcessInfo.processInfo.activeProcessorCount,
            pluginDirectory: String,
            watchPlugins: Bool = true,
            probe: PluginProbe? = nil,
            shutdownGracePeriod: Duration = .seconds(5),
            maxRetiredSwiftImages: Int = 16,
            publishBufferLimit: Int = 10_000,
            mailboxLimit: Int = 10_000,
            handlerTimeout: Duration = .seconds(60),
            reconnectInitialBackoff: Duration = .milliseconds(100),
            reconnectMaxBackoff: Duration = .seconds(5),
            pluginSettings: [String: [String: String]] = [:],
            maxMessageBytes: Int = 4 * 1024 * 1024,
            hostCredentials: ChannelCredentials = .insecure,
            authToken: String? = nil
        ) {
            self.hostAddress = hostAddress
            self.embeddedHost = embeddedHost
            self.clientID = clientID
            self.rpcTimeout = rpcTimeout
            self.workers = workers
            self.pluginDirectory = pluginDirectory
            self.watchPlugins = watchPlugins
            self.probe = probe
            self.shutdownGracePeriod = shutdownGracePeriod
            self.maxRetiredSwiftImages = maxRetiredSwiftImages
            self.publishBufferLimit = publishBufferLimit
            self.mailboxLimit = mailboxLimit
            self.handlerTimeout = handlerTimeout
            self.reconnectInitialBackoff = reconnectInitialBackoff
            self.reconnectMaxBackoff = reconnectMaxBackoff
            self.pluginSettings = pluginSettings
            self.maxMessageBytes = maxMessageBytes
            self.hostCredentials = hostCredentials
            self.authToken = authToken
        }
    }

    private struct State: ~Copyable {
        var embeddedHost: AgentHost?
        var connection: HostConnection?
        var reloader: Reloader?
        var sweeper: Task<Void, Never>?
        var stopped = false
    }

    public let configuration: Configuration
    let logger: Logger
    let core: RuntimeCore
    let loader: PluginLoader
    private let state = Mutex(State())

    public init(configuration: Configuration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        core = RuntimeCore(
            workers: configuration.workers, rpcTimeout: configuration.rpcTimeout,
            mailboxLimit: configuration.mailboxLimit, handlerTimeout: configuration.handlerTimeout, logger: logger)
        loader = try PluginLoader(logger: logger)
        let loader = self.loader
        let retiredLogger = logger
        core.unloadPlugin.withLock {
            $0 = { plugin in
                loader.unload(plugin)
                retiredLogger.info("plugin version retired", metadata: [
                    "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)",
                    "plugin.hash": "\(plugin.contentHash)",
                    "unmapped": "\(!plugin.isSwift)",
                ])
            }
        }
    }

    /// The plugins in service, by file name order.
    public var plugins: [LoadedPlugin] { state.withLock { $0.reloader }?.current ?? [] }

    /// Rescans the plugin directory now (what SIGHUP does): loads new files, swaps changed
    /// ones, withdraws removed ones. Returns when the rescan is done.
    public func rescan() async {
        await state.withLock { $0.reloader }?.rescan()
    }

    /// For benchmarks: feeds `message` (an encoded `agents.Message`) exactly as if it had
    /// arrived from the host on the connection — the same `RuntimeCore.receive` path: decoded,
    /// routed to the agents it reaches and queued in their mailboxes, on the calling thread;
    /// the handlers then run on the worker pool. Answers (to a request) go to the host as
    /// usual. Returns once the message is queued, not handled.
    @_spi(Benchmarks) public func deliverFromHost(_ message: MessageBuffer) {
        core.receive(message)
    }

    /// The address of the host this runtime is connected to.
    public var hostAddress: String? { state.withLock { $0.connection?.address } }

    /// The embedded host, when the runtime runs one.
    public var embeddedHost: AgentHost? { state.withLock { $0.embeddedHost } }

    /// Connects (starting the embedded host first if configured so), loads every plugin of
    /// the directory and registers their agent types and subscriptions.
    ///
    /// A plugin that fails to load or register is refused with a log line naming the file
    /// and the reason; the others serve.
    /// - Throws: if the embedded host cannot listen or the plugin directory cannot be read.
    public func start() async throws {
        let address: String
        var authToken = configuration.authToken
        if let configured = configuration.hostAddress {
            address = configured
        } else {
            if configuration.embeddedHost.credentials.isTLS, !configuration.hostCredentials.isTLS {
                throw RuntimeError(
                    "the embedded host listens with \(configuration.embeddedHost.credentials), but the runtime would connect to it with plaintext: give the runtime TLS credentials that trust the host's certificate")
            }
            // One completion queue for the process: the host's calls run on the handler threads
            // too (gRPC's poller hands wake-ups between threads when a process has several).
            let host = try AgentHost(configuration: configuration.embeddedHost, logger: logger,
                                     queues: core.workers.completions)
            state.withLock { $0.embeddedHost = host }
            address = Self.address(connectingTo: host, tls: configuration.hostCredentials.isTLS)
            if authToken == nil { authToken = configuration.embeddedHost.authTokens.first }
        }
        let core = self.core
        let connection = HostConnection(
            address: address, clientID: configuration.clientID, maxMessageBytes: configuration.maxMessageBytes,
            logger: logger, credentials: configuration.hostCredentials, authToken: authToken,
            queues: core.workers.completions,
            onMessage: { core.receive($0) },
            onDisconnect: { status in
                // RPCs our agents sent will never be answered on a new stream: answer them now.
                core.failOutbound(expiredBy: nil, reason: "The connection to the host was lost (\(status)).")
            })
        core.connection = connection
        try connection.open()
        state.withLock { $0.connection = connection }
        logger.info("runtime connected", metadata: [
            "host.address": "\(address)", "client.id": "\(configuration.clientID)",
            "host.embedded": "\(configuration.hostAddress == nil)",
            "host.transport": "\(configuration.hostCredentials)", "host.auth": "\(authToken == nil ? "none" : "bearer token")",
        ])
        guard FileManager.default.fileExists(atPath: configuration.pluginDirectory) else {
            throw RuntimeError("the plugin directory \(configuration.pluginDirectory) does not exist")
        }
        let reloader = Reloader(runtime: self, connection: connection)
        state.withLock { $0.reloader = reloader }
        connection.setReconnection(.init(
            enabled: true, initialBackoff: configuration.reconnectInitialBackoff,
            maxBackoff: configuration.reconnectMaxBackoff, bufferLimit: configuration.publishBufferLimit,
            restore: { [weak reloader] in try await reloader?.restoreRegistrations() }))
        await reloader.rescan()
        if configuration.watchPlugins {
            reloader.watch(directory: configuration.pluginDirectory)
        }
        let sweeper = Task.detached { [core] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(100))
                core.failOutbound(expiredBy: .now, reason: "")
                core.expireHandlers(now: .now)
            }
        }
        state.withLock { $0.sweeper = sweeper }
    }

    /// Where the runtime reaches its embedded host: its address, or, with TLS to a host
    /// listening on every interface (`0.0.0.0`, `[::]`), `localhost` on its port: a name its
    /// certificate can carry (none names the wildcard address).
    static func address(connectingTo host: AgentHost, tls: Bool) -> String {
        let listenHost = host.configuration.listen.split(separator: ":").dropLast().joined(separator: ":")
        guard tls, ["0.0.0.0", "[::]", "::", ""].contains(listenHost) else { return host.address }
        return "localhost:\(host.port)"
    }

    /// Shuts down gracefully: stops intake (new requests are answered with an error), lets
    /// running and queued handlers finish within ``Configuration/shutdownGracePeriod``, answers
    /// whatever is left with an error, then closes the connection, unloads the plugins and
    /// stops the embedded host.
    public func shutdown() async {
        let (connection, host, reloader, sweeper, first) = state.withLock { state in
            defer { state.stopped = true }
            return (state.connection, state.embeddedHost, state.reloader, state.sweeper, !state.stopped)
        }
        guard first else { return }
        // 1. Intake stops: new requests are answered with an error, new events dropped.
        core.closeIntake()
        logger.info("runtime shutting down: intake closed, letting handlers finish", metadata: [
            "grace": "\(configuration.shutdownGracePeriod)",
        ])
        // 2. What is running or queued may finish within the grace period...
        let drained = await core.waitUntilIdle(deadline: .now + configuration.shutdownGracePeriod)
        // 3. ...and whatever is left is answered, never left hanging.
        if !drained {
            let (pending, queued) = core.abandonRemainingWork(reason: "The runtime is shutting down; the request was not finished.")
            logger.warning("handlers still busy at the end of the grace period were answered with an error", metadata: [
                "pending": "\(pending)", "queued": "\(queued)",
            ])
        }
        sweeper?.cancel()
        // 4. The connection (the answers above go out first; it also cancels registration
        // calls a reconnection may be waiting in, which the reloader would otherwise wait for).
        await connection?.close()
        let plugins = await reloader?.stop() ?? []
        core.connection = nil
        // The embedded host's calls complete on the handler threads' queue: it stops first.
        await host?.shutdown()
        core.workers.stop()
        core.failOutbound(expiredBy: nil, reason: "The runtime is shutting down.")
        for instance in core.routing.withLock({ Array($0.instances.values) }) {
            instance.destroyInstance()
            AgentReferences.remove(instance)
        }
        for plugin in plugins { loader.unload(plugin) }
        core.retireUnusedPlugins()
        loader.removeShadowDirectory()
        core.resignDefault()
        logger.info("runtime stopped")
    }
}

/// A runtime start-up failure, in words a user can act on.
public struct RuntimeError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
