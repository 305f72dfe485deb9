import AgentCluster
import AgentConfig
import AgentHost
import AgentMetrics
import AgentState
import Foundation
import GRPCTransport

extension AgentRuntime {
    public struct Configuration: Sendable {
        /// The host to join (`HOST:PORT`); nil runs an embedded host.
        public var hostAddress: String?
        /// The embedded host's settings (used when ``hostAddress`` is nil).
        public var embeddedHost: AgentHost.Configuration
        /// The host at ``hostAddress`` is the embedded host of the `agentd run` supervisor that
        /// started this runtime (what its logs say; the runtime joins it like any other host).
        public var hostIsSupervisorsEmbeddedHost = false
        /// This runtime's `client-id` (a fresh UUID by default).
        public var clientID: String
        /// How long an RPC a plugin sends waits for its answer.
        public var rpcTimeout: Duration
        /// Handler threads.
        public var workers: Int
        /// Handler threads the runtime may grow to while handlers do not return (nil: 4 ×
        /// ``workers``): a thread stuck in one handler for more than half a second, while work
        /// waits, gets another started in its place, up to this many.
        public var maxWorkers: Int?
        /// What the runtime does once every handler thread, up to ``maxWorkers``, is stuck
        /// past ``handlerTimeout``: ``StuckAction/log`` by default, ``StuckAction/exit(status:)``
        /// with status 75 in `agentd run` (built from an INI file).
        public var stuckAction: StuckAction
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
        /// Keep each publish until the host acknowledges it, and send again after a reconnection
        /// what it had not (``AgentCore/Delivery``; only with hosts that offer it: ours).
        public var acknowledgedDelivery: Bool
        /// Messages that may wait for one agent; past it, RPCs to it are answered with an
        /// error and events dropped (counted and logged).
        public var mailboxLimit: Int
        /// How long a handler may leave a message pending before the runtime answers it with
        /// an error and gives the agent its next message; and how long a handler may run
        /// before its message is answered with an error and its agent refuses RPCs until it
        /// returns.
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
        /// The SQLite file agents' state is kept in (nil: no store — state lives in plugin
        /// memory only), and how durable its commits are.
        public var stateStorePath: String?
        /// The NATS servers of a JetStream key-value state store (`[state] store = nats`), used
        /// instead of ``stateStorePath`` when set: state that follows a shared type's keys to
        /// runtimes on other machines.
        public var stateNATS: NATSConnection.Options?
        public var stateDurability: SQLiteStateStore.Durability
        /// Retire an agent idle this long (zero: never for idleness).
        public var idleAgentTimeout: Duration
        /// At most this many resident agents (least recently used retired first).
        public var maxResidentAgents: Int
        /// At most this many bytes held by resident agents — their agent type and key, a fixed
        /// overhead, and the size of the state they hold (the snapshot last written, read or
        /// carried over) — least recently used retired first.
        public var maxResidentBytes: Int
        /// Tests only: called after a plugin's shadow copy passed the probe, before it is
        /// loaded.
        var pluginProbed: (@Sendable (PluginLoader.ShadowCopy) -> Void)?
        /// `HOST:PORT` to serve Prometheus metrics on (`GET /metrics`; port 0 picks one): the
        /// runtime's and its embedded host's. Nil: no listener.
        public var metricsListen: String?
        /// The registry the runtime's metrics (and its embedded host's, unless that has its own)
        /// go to; nil: a registry of its own when ``metricsListen`` is set, else no metrics.
        public var metricsRegistry: MetricsRegistry?
        /// Plugin versions whose handlers are not called, by content hash, with the reason
        /// every RPC to their types is answered with (`agentd run`'s supervisor passes the
        /// plugins it disabled after repeated crashes). Their types are still registered.
        public var disabledPlugins: [String: String] = [:]
        /// Ids of events dropped instead of handled: `agentd run`'s supervisor passes the
        /// events whose handler crashed an earlier runtime process, so that a copy the host
        /// sends again (to a returning client id, or from its late-subscriber window) does not
        /// crash this one too.
        public var skippedEvents: Set<String> = []

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
            acknowledgedDelivery: Bool = true,
            mailboxLimit: Int = 10_000,
            handlerTimeout: Duration = .seconds(60),
            reconnectInitialBackoff: Duration = .milliseconds(100),
            reconnectMaxBackoff: Duration = .seconds(5),
            pluginSettings: [String: [String: String]] = [:],
            maxMessageBytes: Int = 4 * 1024 * 1024,
            hostCredentials: ChannelCredentials = .insecure,
            authToken: String? = nil,
            stateStorePath: String? = nil,
            stateDurability: SQLiteStateStore.Durability = .normal,
            idleAgentTimeout: Duration = StateSettings.defaultIdle,
            maxResidentAgents: Int = StateSettings.defaultMaxResident,
            metricsListen: String? = nil,
            metricsRegistry: MetricsRegistry? = nil,
            maxWorkers: Int? = nil,
            stuckAction: StuckAction = .log,
            maxResidentBytes: Int = StateSettings.defaultMaxResidentBytes
        ) {
            self.maxWorkers = maxWorkers
            self.stuckAction = stuckAction
            self.maxResidentBytes = maxResidentBytes
            self.metricsListen = metricsListen
            self.metricsRegistry = metricsRegistry
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
            self.acknowledgedDelivery = acknowledgedDelivery
            self.mailboxLimit = mailboxLimit
            self.handlerTimeout = handlerTimeout
            self.reconnectInitialBackoff = reconnectInitialBackoff
            self.reconnectMaxBackoff = reconnectMaxBackoff
            self.pluginSettings = pluginSettings
            self.maxMessageBytes = maxMessageBytes
            self.hostCredentials = hostCredentials
            self.authToken = authToken
            self.stateStorePath = stateStorePath
            self.stateDurability = stateDurability
            self.idleAgentTimeout = idleAgentTimeout
            self.maxResidentAgents = maxResidentAgents
        }
    }
}

extension AgentRuntime.Configuration {
    /// The runtime's configuration as an INI file says it (``RuntimeConfiguration``, what
    /// `agentd run --config` reads), with what only the command line knows.
    /// - Parameters:
    ///   - file: the parsed INI file.
    ///   - pluginDirectory: the plugin folder (`[plugins] directory`, or its override).
    ///   - embeddedHost: the embedded host's configuration (from `[host]`, with overrides).
    ///   - hostAddress: the host to join (`[runtime] host`, or its override); nil: embedded.
    ///   - probe: how plugins are checked before loading.
    public init(_ file: RuntimeConfiguration, pluginDirectory: String, embeddedHost: AgentHost.Configuration,
                hostAddress: String?, probe: PluginProbe?) {
        self.init(
            hostAddress: hostAddress, embeddedHost: embeddedHost,
            clientID: file.clientID ?? UUID().uuidString.lowercased(), rpcTimeout: file.rpcTimeout,
            workers: file.workers, pluginDirectory: pluginDirectory, probe: probe,
            publishBufferLimit: file.publishBuffer, acknowledgedDelivery: file.acknowledgedDelivery,
            mailboxLimit: file.mailboxLimit,
            handlerTimeout: file.handlerTimeout, pluginSettings: file.pluginSettings,
            maxMessageBytes: file.host.maxMessageBytes, hostCredentials: file.hostCredentials,
            authToken: file.authToken,
            stateStorePath: file.state.store == .sqlite ? file.state.resolvedPath(configurationPath: file.path) : nil,
            stateDurability: file.state.sync == .full ? .full : .normal,
            idleAgentTimeout: file.state.idle, maxResidentAgents: file.state.maxResident,
            metricsListen: file.metricsListen, maxWorkers: file.maxWorkers,
            // A runtime that can no longer serve ends itself, for its supervisor to restart.
            stuckAction: .exit(status: AgentRuntime.stuckExitStatus),
            maxResidentBytes: file.state.maxResidentBytes)
        if file.state.store == .nats {
            var options = NATSConnection.Options(servers: file.state.nats ?? file.cluster?.nats ?? [])
            // The cluster's credentials, where the runtime has a [cluster] section.
            if let cluster = file.cluster {
                if cluster.tlsCA != nil || cluster.tlsCertificate != nil {
                    options.tls = .init(caFile: cluster.tlsCA, certificateFile: cluster.tlsCertificate, privateKeyFile: cluster.tlsKey)
                }
                options.token = cluster.token
                options.credentialsFile = cluster.credentialsFile
            }
            stateNATS = options
        }
    }
}

extension RuntimeConfiguration {
    /// Plaintext, or TLS (with a client certificate) as `[runtime] tls_*` say.
    public var hostCredentials: ChannelCredentials {
        guard connectsWithTLS else { return .insecure }
        return .tls(
            rootCertificates: tlsCA?.contents, certificateChain: tlsCertificate?.contents,
            privateKey: tlsKey?.contents)
    }
}
