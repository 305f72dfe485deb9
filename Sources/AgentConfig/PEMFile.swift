/// A PEM file a TLS key names (`tls_certificate`, `tls_key`, `tls_ca`, `tls_client_ca`): read
/// when the configuration is, so that a missing or unreadable file stops start-up with an
/// error naming the key, instead of failing later in the TLS library.
///
/// Its ``description`` is the path: never the contents, which may be a private key.
public struct PEMFile: Sendable, Hashable, CustomStringConvertible {
    /// The largest PEM file accepted: 1 MiB.
    public static let maximumFileSize = 1 << 20

    /// The file, resolved against the configuration file's folder when it was written relative.
    public var path: String
    /// The PEM text.
    public var contents: String
    /// The line of the configuration file that named it, if it came from one.
    public var line: Int?

    public init(path: String, contents: String, line: Int? = nil) {
        self.path = path
        self.contents = contents
        self.line = line
    }

    public var description: String { path }
}
