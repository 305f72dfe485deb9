/// The `[cluster]` section: how this host joins a cluster of hosts that meet on NATS.
///
/// A file without `[cluster]` runs a host alone (``RuntimeConfiguration/cluster`` is `nil`);
/// with it, `nats` is required and everything else has a default.
///
/// The file paths are resolved against the INI file's folder and checked when the
/// configuration is read (a missing or unreadable file is an error naming the line and the
/// path), but kept as paths: nats.c reads the files itself when it connects.
public struct ClusterSettings: Sendable, Hashable {
    /// The default ``lease``: 3 seconds.
    public static let defaultLease: Duration = .seconds(3)
    /// The accepted `lease_seconds` values: 1 to 300 seconds.
    public static let leaseRange: ClosedRange<Duration> = .seconds(1)...(.seconds(300))
    /// The longest ``name``, in characters.
    public static let maximumNameLength = 128

    /// `nats = URL, ...`: the NATS servers, each `nats://HOST:PORT` or `tls://HOST:PORT` (a
    /// `HOST:PORT` in the file is written here as `nats://HOST:PORT`), in the file's order.
    public var nats: [String]
    /// `name = TEXT`: this host's name in the cluster, unique per host: 1 to
    /// ``maximumNameLength`` characters, no whitespace or control characters. `nil`: the host
    /// uses `HOSTNAME:PORT`.
    public var name: String?
    /// `lease_seconds = N`: how long a host that stopped sending heartbeats still counts as
    /// alive; within ``leaseRange``.
    public var lease: Duration
    /// `tls_ca = PATH`: the authority (PEM) that signed the NATS servers' certificates; `nil`:
    /// the system's.
    public var tlsCA: String?
    /// `tls_certificate = PATH`: this host's certificate chain (PEM), for servers that require
    /// client certificates; set together with ``tlsKey``.
    public var tlsCertificate: String?
    /// `tls_key = PATH`: the private key of ``tlsCertificate`` (PEM, unencrypted).
    public var tlsKey: String?
    /// `token = TEXT` or `token_file = PATH`: the token the NATS servers require
    /// (`authorization { token: ... }`), read from the file when given as one.
    public var token: String?
    /// `credentials = PATH`: a NATS credentials file (user JWT and NKey seed, as `nsc` writes
    /// it).
    public var credentialsFile: String?

    public init(
        nats: [String],
        name: String? = nil,
        lease: Duration = ClusterSettings.defaultLease,
        tlsCA: String? = nil,
        tlsCertificate: String? = nil,
        tlsKey: String? = nil,
        token: String? = nil,
        credentialsFile: String? = nil
    ) {
        self.nats = nats
        self.name = name
        self.lease = lease
        self.tlsCA = tlsCA
        self.tlsCertificate = tlsCertificate
        self.tlsKey = tlsKey
        self.token = token
        self.credentialsFile = credentialsFile
    }
}
