#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Everything `agentd run` (and, through ``host``, `agentd host`) reads from its INI file.
///
/// Every property has a default, so an empty file, or no file, is a valid configuration, and
/// every property is a `var` so that command-line options can override what the file says.
///
/// ```swift
/// var configuration = try RuntimeConfiguration.load(path: "Config/agentd.ini")
/// if let listen = options.listen { configuration.host.listen = listen }
/// let plugins = try configuration.requiredPluginDirectory()
/// ```
///
/// The file's sections and keys:
///
/// | key | meaning | default |
/// |---|---|---|
/// | `[runtime] host = HOST:PORT` | the host to connect to | none: run an embedded host |
/// | `[runtime] rpc_timeout = SECONDS` | how long an RPC this runtime sends waits for its answer | 60 |
/// | `[runtime] workers = N` | handler threads, 1...256 | the number of CPUs |
/// | `[runtime] client_id = TEXT` | the id the runtime presents to the host | none: generated |
/// | `[runtime] tls_ca = PATH` | connect to the host with TLS, trusting this CA (PEM) | none: plaintext |
/// | `[runtime] tls_certificate = PATH`, `tls_key = PATH` | the client certificate (PEM) for a host that requires one | none |
/// | `[runtime] auth_token = TOKEN` or `auth_token_file = PATH` | sent as `authorization: Bearer TOKEN` | none |
/// | `[runtime] publish_buffer = N` | publishes kept while the host is unreachable, 0...10000000 | 10000 |
/// | `[runtime] acknowledged_delivery = true` or `false` | keep each publish until the host acknowledges it, send again after a reconnection what it had not (agentd hosts only) | true |
/// | `[runtime] mailbox_limit = N` | messages that may wait for one agent, 1...10000000 | 10000 |
/// | `[runtime] handler_timeout = SECONDS` | how long a handler may leave a message pending | 60 |
/// | `[runtime] metrics_listen = HOST:PORT` | serve the runtime's (and its embedded host's) Prometheus metrics there | none: off |
/// | `[host] listen = HOST:PORT` | where the (embedded) host listens | `127.0.0.1:50051` |
/// | `[host] max_message_bytes = N` | the largest message, in bytes, or with `KiB`/`MiB` | 4 MiB |
/// | `[host] rpc_timeout = SECONDS` | when the host answers an unanswered RPC with an error | 60 |
/// | `[host] queue_limit_messages = N`, `queue_limit_bytes = N` | one connection's outbound queue bound | 100000, 256 MiB |
/// | `[host] outbound_budget_bytes = N` | what may wait for all connections together; past it, the connections holding more than their share are refused | 512 MiB |
/// | `[host] late_window_seconds = SECONDS` | how long events no subscription matched (and, after the host starts, every event) wait for a late subscriber, 0...600 (0: off) | 5 |
/// | `[host] late_window_bytes = N` | the most those kept events may take | 64 MiB |
/// | `[host] tls_certificate = PATH`, `tls_key = PATH` | listen with TLS (PEM chain and key) | none: plaintext |
/// | `[host] tls_client_ca = PATH` | mutual TLS: clients need a certificate this CA signed | none |
/// | `[host] auth_tokens = TOKEN, ...` or `auth_tokens_file = PATH` | tokens a call must carry one of | none: no token needed |
/// | `[host] metrics_listen = HOST:PORT` | serve the host's Prometheus metrics there | none: off |
/// | `[plugins] directory = PATH` | the folder of agent plugins, relative to the INI file | none: required to run |
/// | `[log] level = LEVEL` | trace, debug, info, notice, warning, error or critical | info |
/// | `[log] format = text` or `json` | text lines, or one JSON object per line | text |
/// | `[cluster] nats = URL, ...` | the NATS servers the cluster's hosts meet on (`nats://HOST:PORT`, `tls://HOST:PORT` or `HOST:PORT`) | none: required in `[cluster]` |
/// | `[cluster] name = TEXT` | this host's name in the cluster, unique per host | `HOSTNAME:PORT` |
/// | `[cluster] lease_seconds = SECONDS` | how long a host whose heartbeats stopped still counts as alive, 1...300 | 3 |
/// | `[cluster] tls_ca = PATH` | the authority (PEM) that signed the NATS servers' certificates | the system's |
/// | `[cluster] tls_certificate = PATH`, `tls_key = PATH` | this host's certificate (PEM) for NATS servers that require one | none |
/// | `[cluster] token = TOKEN` or `token_file = PATH` | the token the NATS servers require | none |
/// | `[cluster] credentials = PATH` | a NATS credentials file (`.creds`) | none |
/// | `[plugin.NAME] KEY = VALUE` | settings handed to plugin NAME as they are | none |
///
/// Paths are resolved against the INI file's folder. A file a key names that is missing,
/// unreadable or not what the key needs (no PEM certificate, no token) is an error naming the
/// file, line and key, and the path.
///
/// An unknown section or key, or a value that does not fit its key, is an error naming the
/// file, line and key: nothing is silently ignored.
public struct RuntimeConfiguration: Sendable, Hashable {
    /// The default for both `rpc_timeout` keys: 60 seconds.
    public static let defaultRPCTimeout: Duration = .seconds(60)
    /// The default `[log] level`.
    public static let defaultLogLevel = "info"
    /// The accepted `[log] level` values, least severe first; they are swift-log's
    /// `Logger.Level` raw values.
    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
    /// The accepted `[runtime] workers` values.
    public static let workerRange = 1...256
    /// The default `[runtime] publish_buffer` (the runtime's own default).
    public static let defaultPublishBuffer = 10_000
    /// The accepted `[runtime] publish_buffer` values (0: refuse publishes while the host is
    /// unreachable).
    public static let publishBufferRange = 0...10_000_000
    /// The default `[runtime] mailbox_limit` (the runtime's own default).
    public static let defaultMailboxLimit = 10_000
    /// The accepted `[runtime] mailbox_limit` values.
    public static let mailboxLimitRange = 1...10_000_000
    /// The default `[runtime] handler_timeout`: 60 seconds.
    public static let defaultHandlerTimeout: Duration = .seconds(60)

    /// The default `[runtime] workers`: the number of online CPUs, within ``workerRange``.
    public static var defaultWorkers: Int {
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        return min(max(cpus, workerRange.lowerBound), workerRange.upperBound)
    }

    /// The file this configuration was read from, as it was named; `nil` if it was not read
    /// from a file.
    public var path: String?

    /// `[runtime] host`: the host's `HOST:PORT` to connect to; `nil` means run an embedded
    /// host listening on ``HostSettings/listen`` and connect to that.
    public var hostAddress: String?
    /// `[runtime] rpc_timeout`: how long an RPC sent by one of this runtime's agents waits
    /// for its answer.
    public var rpcTimeout: Duration
    /// `[runtime] workers`: how many threads run agents' handlers.
    public var workers: Int
    /// `[runtime] client_id`: the client id the runtime presents to the host; `nil` means
    /// generate one.
    public var clientID: String?
    /// `[runtime] tls_ca`: connect to the host with TLS, trusting this authority (PEM); `nil`
    /// and no ``tlsCertificate``: plaintext.
    public var tlsCA: PEMFile?
    /// `[runtime] tls_certificate`: this runtime's certificate chain (PEM), for a host that
    /// requires client certificates; connects with TLS even without ``tlsCA`` (then trusting
    /// the TLS library's default roots).
    public var tlsCertificate: PEMFile?
    /// `[runtime] tls_key`: the private key of ``tlsCertificate`` (PEM, unencrypted).
    public var tlsKey: PEMFile?
    /// `[runtime] auth_token` or `auth_token_file`: the token sent as
    /// `authorization: Bearer <token>` on every call to the host.
    public var authToken: String?
    /// `[runtime] publish_buffer`: publishes kept while the host is unreachable.
    public var publishBuffer: Int
    /// `[runtime] acknowledged_delivery`: publishes wait for the host's acknowledgement.
    public var acknowledgedDelivery: Bool
    /// `[runtime] mailbox_limit`: messages that may wait for one agent.
    public var mailboxLimit: Int
    /// `[runtime] handler_timeout`: how long a handler may leave a message pending before the
    /// runtime answers it with an error.
    public var handlerTimeout: Duration
    /// `[runtime] metrics_listen`: where to serve Prometheus metrics (`GET /metrics`); `nil`:
    /// nowhere (the default).
    public var metricsListen: String?

    /// `[host]`: the embedded host's settings, and `agentd host --config`'s.
    public var host: HostSettings

    /// `[state]` and `[agents]`: the state store and when idle agents are retired.
    public var state: StateSettings

    /// `[cluster]`: how the host joins a cluster of hosts over NATS; `nil` when the file has no
    /// `[cluster]` section (the host runs alone).
    public var cluster: ClusterSettings?

    /// `[plugins] directory`: the folder the runtime loads agent plugins from, already resolved
    /// against the INI file's folder when it was written relative; `nil` if not set (see
    /// ``requiredPluginDirectory()``).
    public var pluginDirectory: String?

    /// `[log] level`: one of ``logLevels``, in lower case.
    public var logLevel: String
    /// `[log] format`: text lines or JSON lines.
    public var logFormat: LogFormat = .text

    /// Each `[plugin.NAME]` section's settings, keyed by NAME, handed to that plugin as they
    /// are written (quotes and escapes resolved).
    public var pluginSettings: [String: [String: String]]
    /// The same settings in file order, with each one's file and line, for messages about a
    /// setting a plugin refuses.
    public var pluginSettingEntries: [String: [IniEntry]]

    public init(
        path: String? = nil,
        hostAddress: String? = nil,
        rpcTimeout: Duration = RuntimeConfiguration.defaultRPCTimeout,
        workers: Int = RuntimeConfiguration.defaultWorkers,
        clientID: String? = nil,
        tlsCA: PEMFile? = nil,
        tlsCertificate: PEMFile? = nil,
        tlsKey: PEMFile? = nil,
        authToken: String? = nil,
        publishBuffer: Int = RuntimeConfiguration.defaultPublishBuffer,
        acknowledgedDelivery: Bool = true,
        mailboxLimit: Int = RuntimeConfiguration.defaultMailboxLimit,
        handlerTimeout: Duration = RuntimeConfiguration.defaultHandlerTimeout,
        metricsListen: String? = nil,
        host: HostSettings = HostSettings(),
        state: StateSettings = StateSettings(),
        cluster: ClusterSettings? = nil,
        pluginDirectory: String? = nil,
        logLevel: String = RuntimeConfiguration.defaultLogLevel,
        pluginSettings: [String: [String: String]] = [:],
        pluginSettingEntries: [String: [IniEntry]] = [:]
    ) {
        self.path = path
        self.hostAddress = hostAddress
        self.rpcTimeout = rpcTimeout
        self.workers = workers
        self.clientID = clientID
        self.tlsCA = tlsCA
        self.tlsCertificate = tlsCertificate
        self.tlsKey = tlsKey
        self.authToken = authToken
        self.publishBuffer = publishBuffer
        self.acknowledgedDelivery = acknowledgedDelivery
        self.mailboxLimit = mailboxLimit
        self.handlerTimeout = handlerTimeout
        self.metricsListen = metricsListen
        self.host = host
        self.state = state
        self.cluster = cluster
        self.pluginDirectory = pluginDirectory
        self.logLevel = logLevel
        self.pluginSettings = pluginSettings
        self.pluginSettingEntries = pluginSettingEntries
    }

    /// Reads, parses and checks a configuration file.
    /// - Parameter path: The INI file, absolute or relative to the current directory.
    /// - Throws: ``ConfigurationError`` naming the file, and the line and key where there is
    ///   one, of the first problem.
    public static func load(path: String) throws(ConfigurationError) -> RuntimeConfiguration {
        try RuntimeConfiguration(document: IniDocument.load(path: path))
    }

    /// Parses and checks the text of a configuration file.
    /// - Parameters:
    ///   - text: The file's contents.
    ///   - path: The file's name: it appears in errors, and a relative `[plugins] directory`
    ///     is resolved against its folder, as are the files the TLS and token keys name, which
    ///     are read now (regular files only, at most 1 MiB each).
    /// - Throws: ``ConfigurationError`` naming the file, and the line and key where there is
    ///   one, of the first problem.
    public static func parse(text: String, path: String) throws(ConfigurationError) -> RuntimeConfiguration {
        try RuntimeConfiguration(document: IniDocument.parse(text: text, path: path))
    }

    /// Parses and checks the bytes of a configuration file; see ``parse(text:path:)``.
    public static func parse(bytes: [UInt8], path: String) throws(ConfigurationError) -> RuntimeConfiguration {
        try RuntimeConfiguration(document: IniDocument.parse(bytes: bytes, path: path))
    }

    /// The plugin folder, for commands that load plugins.
    /// - Throws: ``ConfigurationError`` (``ConfigurationError/Code/missingKey``) naming the file
    ///   if `[plugins] directory` is not set.
    public func requiredPluginDirectory() throws(ConfigurationError) -> String {
        guard let pluginDirectory else {
            throw ConfigurationError(
                .missingKey,
                "not set; running agents needs the folder of agent plugins (lib*.so), e.g. [plugins] directory = plugins (relative to the configuration file)",
                path: path, section: "plugins", key: "directory")
        }
        return pluginDirectory
    }

    /// Whether the runtime connects to its host with TLS (`[runtime] tls_ca` or
    /// `tls_certificate` is set).
    public var connectsWithTLS: Bool { tlsCA != nil || tlsCertificate != nil }

    /// Checks that the runtime can connect to its own embedded host (the one `[host]` sets
    /// up, used when `[runtime] host` is not set): with TLS when that host listens with TLS,
    /// with a client certificate when it requires one, and with plaintext when it listens
    /// with plaintext.
    /// - Throws: ``ConfigurationError`` naming the file and the `[runtime]` key to set (or
    ///   the one in the way).
    public func checkEmbeddedHostConnection() throws(ConfigurationError) {
        if let certificate = host.tlsCertificate, !connectsWithTLS {
            throw ConfigurationError(
                .missingKey,
                "not set, but the embedded host listens with TLS ([host] tls_certificate\(Self.at(certificate.line))); give the authority (PEM) that signed the host's certificate, so that the runtime can connect to it",
                path: path, section: "runtime", key: "tls_ca")
        }
        if let authority = host.tlsClientCA, tlsCertificate == nil {
            throw ConfigurationError(
                .missingKey,
                "not set, but the embedded host requires client certificates ([host] tls_client_ca\(Self.at(authority.line))); give the runtime a certificate that authority signed, with tls_key",
                path: path, section: "runtime", key: "tls_certificate")
        }
        if host.tlsCertificate == nil, let file = tlsCA ?? tlsCertificate {
            throw ConfigurationError(
                .invalidValue,
                "the runtime would connect with TLS, but its embedded host listens with plaintext (no [host] tls_certificate); set [host] tls_certificate and tls_key, or remove the runtime's TLS keys",
                path: path, line: file.line, section: "runtime", key: tlsCA != nil ? "tls_ca" : "tls_certificate")
        }
    }

    /// `, line N` when there is a line.
    static func at(_ line: Int?) -> String { line.map { ", line \($0)" } ?? "" }
}
