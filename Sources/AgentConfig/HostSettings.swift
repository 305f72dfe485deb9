/// The `[host]` section: how the host serves, whether it is the runtime's embedded host or
/// `agentd host --config FILE`.
public struct HostSettings: Sendable, Hashable {
    /// The default `listen` address.
    public static let defaultListen = "127.0.0.1:50051"
    /// The default `max_message_bytes`: 4 MiB, as in AutoGen.
    public static let defaultMaxMessageBytes = 4 * 1024 * 1024
    /// The largest `max_message_bytes` accepted: gRPC's limit, 2 GiB - 1.
    public static let largestMaxMessageBytes = Int(Int32.max)
    /// The default `queue_limit_messages` (the host's own default).
    public static let defaultQueueLimitMessages = 100_000
    /// The accepted `queue_limit_messages` values.
    public static let queueLimitMessagesRange = 1...100_000_000
    /// The default `queue_limit_bytes`: 256 MiB (the host's own default).
    public static let defaultQueueLimitBytes = 256 * 1024 * 1024
    /// The largest `queue_limit_bytes` (and `outbound_budget_bytes`) accepted: 64 GiB.
    public static let largestQueueLimitBytes = 64 * 1024 * 1024 * 1024
    /// The default `outbound_budget_bytes`: 512 MiB (the host's own default).
    public static let defaultOutboundBudgetBytes = 512 * 1024 * 1024

    /// The default `late_window_seconds`: 5 s, as AutoGen .NET keeps unclaimed events.
    public static let defaultLateWindow: Duration = .seconds(5)
    /// The accepted `late_window_seconds` values (0: keep nothing).
    public static let lateWindowRange: ClosedRange<Duration> = .zero ... .seconds(600)
    /// The default `late_window_bytes`: 64 MiB.
    public static let defaultLateWindowBytes = 64 * 1024 * 1024

    /// `listen = HOST:PORT`: where to listen (port 0 picks a free port). IPv6 in brackets:
    /// `[::1]:50051`.
    public var listen: String
    /// `max_message_bytes = N`: the largest message a worker may send, in bytes (the file may
    /// say `4 MiB` or `512 KiB`).
    public var maxMessageBytes: Int
    /// `rpc_timeout = SECONDS`: how long a caller waits for an RPC's answer before the host
    /// answers with an error.
    public var rpcTimeout: Duration
    /// `queue_limit_messages = N`: how many messages may wait for one connection that reads
    /// slowly; past it, events for it are dropped (counted and logged) and requests to it are
    /// answered with an error.
    public var queueLimitMessages: Int
    /// `queue_limit_bytes = N`: the same bound in bytes (the file may say `256 MiB`).
    public var queueLimitBytes: Int
    /// `outbound_budget_bytes = N`: what may wait for all connections together (the file may
    /// say `1 GiB`); past it, events for the connections holding more than their share are
    /// dropped and requests to them answered with an error.
    public var outboundBudgetBytes: Int
    /// `tls_certificate = PATH`: the host's certificate chain (PEM); with ``tlsKey``, the host
    /// listens with TLS. `nil`: plaintext, what AutoGen's Python workers speak.
    public var tlsCertificate: PEMFile?
    /// `tls_key = PATH`: the private key of ``tlsCertificate`` (PEM, unencrypted).
    public var tlsKey: PEMFile?
    /// `tls_client_ca = PATH`: mutual TLS: workers must present a certificate this authority
    /// (PEM) signed.
    public var tlsClientCA: PEMFile?
    /// `auth_tokens = TOKEN, ...` or `auth_tokens_file = PATH`: when not empty, every call
    /// must carry one of these in `authorization: Bearer <token>` metadata.
    public var authTokens: [String]
    /// `metrics_listen = HOST:PORT`: serve Prometheus metrics (`GET /metrics`) there; `nil`:
    /// none (the default).
    public var metricsListen: String?
    /// `late_window_seconds = SECONDS`: how long events that matched no subscription — and,
    /// after the host starts, every event — wait for a subscription that arrives late.
    public var lateWindow: Duration
    /// `late_window_bytes = N`: the most those kept events may take.
    public var lateWindowBytes: Int

    public init(
        listen: String = HostSettings.defaultListen,
        maxMessageBytes: Int = HostSettings.defaultMaxMessageBytes,
        rpcTimeout: Duration = RuntimeConfiguration.defaultRPCTimeout,
        queueLimitMessages: Int = HostSettings.defaultQueueLimitMessages,
        queueLimitBytes: Int = HostSettings.defaultQueueLimitBytes,
        outboundBudgetBytes: Int = HostSettings.defaultOutboundBudgetBytes,
        tlsCertificate: PEMFile? = nil,
        tlsKey: PEMFile? = nil,
        tlsClientCA: PEMFile? = nil,
        authTokens: [String] = [],
        metricsListen: String? = nil,
        lateWindow: Duration = HostSettings.defaultLateWindow,
        lateWindowBytes: Int = HostSettings.defaultLateWindowBytes
    ) {
        self.lateWindow = lateWindow
        self.lateWindowBytes = lateWindowBytes
        self.metricsListen = metricsListen
        self.listen = listen
        self.maxMessageBytes = maxMessageBytes
        self.rpcTimeout = rpcTimeout
        self.queueLimitMessages = queueLimitMessages
        self.queueLimitBytes = queueLimitBytes
        self.outboundBudgetBytes = outboundBudgetBytes
        self.tlsCertificate = tlsCertificate
        self.tlsKey = tlsKey
        self.tlsClientCA = tlsClientCA
        self.authTokens = authTokens
    }
}
