import AgentCluster

/// How a host joins a cluster of hosts over NATS (`[cluster]` in the INI file).
public struct ClusterConfiguration: Sendable {
    /// The NATS servers, and how to reach them (TLS, token, credentials).
    public var nats: NATSConnection.Options
    /// This host's name in the cluster, unique per host; nil: the machine's host name and the
    /// port the host listens on (`box-1:50051`).
    public var name: String?
    /// How long a host that stopped sending heartbeats (it died, or lost NATS) is still taken
    /// for alive: past it, the other hosts release its agent types and subscriptions, and
    /// answer the RPCs it had not answered with an error.
    public var lease: Duration
    /// How often this host says it is alive (a sixth of the lease by default).
    public var heartbeat: Duration

    public static let defaultLease: Duration = .seconds(3)

    public init(nats: NATSConnection.Options, name: String? = nil, lease: Duration = Self.defaultLease, heartbeat: Duration? = nil) {
        self.nats = nats
        self.name = name
        self.lease = lease
        self.heartbeat = heartbeat ?? lease / 6
    }
}

/// A host's view of its cluster (``AgentHost/clusterStatus``).
public struct ClusterStatus: Sendable, Equatable {
    /// This host's cluster name.
    public var name: String
    /// The NATS servers.
    public var nats: String
    /// Whether the NATS connection is up. While it is not, the host serves its own workers
    /// only: requests to agent types of other hosts are answered with an error at once.
    public var connected: Bool
    /// The other hosts heard from within the lease, by name.
    public var peers: [String]
    /// Agent types held by workers of other hosts.
    public var remoteAgentTypes: Int
}

/// Why a host could not join its cluster.
public struct ClusterError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
