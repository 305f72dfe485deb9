/// The `[host]` section: how the host serves, whether it is the runtime's embedded host or
/// `agentd host --config FILE`.
public struct HostSettings: Sendable, Hashable {
    /// The default `listen` address.
    public static let defaultListen = "127.0.0.1:50051"
    /// The default `max_message_bytes`: 4 MiB, as in AutoGen.
    public static let defaultMaxMessageBytes = 4 * 1024 * 1024
    /// The largest `max_message_bytes` accepted: gRPC's limit, 2 GiB - 1.
    public static let largestMaxMessageBytes = Int(Int32.max)

    /// `listen = HOST:PORT`: where to listen (port 0 picks a free port). IPv6 in brackets:
    /// `[::1]:50051`.
    public var listen: String
    /// `max_message_bytes = N`: the largest message a worker may send, in bytes (the file may
    /// say `4 MiB` or `512 KiB`).
    public var maxMessageBytes: Int
    /// `rpc_timeout = SECONDS`: how long a caller waits for an RPC's answer before the host
    /// answers with an error.
    public var rpcTimeout: Duration

    public init(
        listen: String = HostSettings.defaultListen,
        maxMessageBytes: Int = HostSettings.defaultMaxMessageBytes,
        rpcTimeout: Duration = RuntimeConfiguration.defaultRPCTimeout
    ) {
        self.listen = listen
        self.maxMessageBytes = maxMessageBytes
        self.rpcTimeout = rpcTimeout
    }
}
