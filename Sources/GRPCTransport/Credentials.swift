import CGRPC

/// How a server secures its connections: plaintext, TLS, or mutual TLS.
///
/// ```swift
/// let credentials = ServerCredentials.tls(
///     certificateChain: try String(contentsOfFile: "server.pem"),
///     privateKey: try String(contentsOfFile: "server.key"),
///     clientCertificateAuthority: try String(contentsOfFile: "clients-ca.pem"))  // nil: no client certificates
/// let server = try Server(configuration: .init(address: "0.0.0.0:50051", credentials: credentials), router: router)
/// ```
///
/// Its ``description`` names the kind (`plaintext`, `TLS`, `mutual TLS`) and never the key.
public struct ServerCredentials: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Hashable {
        case insecure
        case tls(certificateChain: String, privateKey: String, clientCertificateAuthority: String?)
    }
    let kind: Kind

    /// Plaintext HTTP/2 (what AutoGen's Python workers speak).
    public static let insecure = ServerCredentials(kind: .insecure)

    /// TLS with the server's certificate chain and private key, both PEM text.
    ///
    /// - Parameters:
    ///   - certificateChain: the server's certificate (first) and any intermediates, PEM.
    ///   - privateKey: the certificate's private key, PEM (unencrypted).
    ///   - clientCertificateAuthority: when set (PEM), mutual TLS: every client must present a
    ///     certificate signed by one of these certificates, or its connection is refused during
    ///     the handshake. When nil, clients are not asked for a certificate.
    ///
    /// A chain or key the TLS library cannot use makes ``Server/init(configuration:router:)``
    /// throw ``TransportError/Code/bindFailed``.
    public static func tls(
        certificateChain: String, privateKey: String, clientCertificateAuthority: String? = nil
    ) -> ServerCredentials {
        ServerCredentials(kind: .tls(
            certificateChain: certificateChain, privateKey: privateKey,
            clientCertificateAuthority: clientCertificateAuthority))
    }

    /// Whether connections are encrypted.
    public var isTLS: Bool {
        if case .tls = kind { return true }
        return false
    }

    /// Whether clients must present a certificate signed by the configured authority.
    public var requiresClientCertificate: Bool {
        if case .tls(_, _, let authority) = kind { return authority != nil }
        return false
    }

    /// `plaintext`, `TLS` or `mutual TLS`.
    public var description: String {
        switch kind {
        case .insecure: return "plaintext"
        case .tls(_, _, let authority): return authority == nil ? "TLS" : "mutual TLS"
        }
    }

    /// Creates the C credentials; the caller releases them. The C core copies the PEM text.
    func makeCCredentials() -> OpaquePointer? {
        switch kind {
        case .insecure:
            return grpc_insecure_server_credentials_create()
        case .tls(let chain, let key, let authority):
            return chain.withCString { chain in
                key.withCString { key in
                    withOptionalCString(authority) { authority in
                        var pair = grpc_ssl_pem_key_cert_pair(private_key: key, cert_chain: chain)
                        return grpc_ssl_server_credentials_create_ex(
                            authority, &pair, 1,
                            authority == nil
                                ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY,
                            nil)
                    }
                }
            }
        }
    }
}

/// How a client secures its connection: plaintext or TLS, with a client certificate for
/// servers that ask for one (mutual TLS).
///
/// ```swift
/// let credentials = ChannelCredentials.tls(rootCertificates: try String(contentsOfFile: "ca.pem"))
/// let channel = Channel(configuration: .init(target: "agents.example:50051", credentials: credentials))
/// ```
///
/// The server's certificate must name the host of the channel's target (a DNS name, or an IP
/// address in its subject alternative names).
public struct ChannelCredentials: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Hashable {
        case insecure
        case tls(rootCertificates: String?, certificateChain: String?, privateKey: String?)
    }
    let kind: Kind

    /// Plaintext HTTP/2.
    public static let insecure = ChannelCredentials(kind: .insecure)

    /// TLS.
    ///
    /// - Parameters:
    ///   - rootCertificates: the certificate authorities the server's certificate must chain to,
    ///     PEM; nil: the C core's default roots (`GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`, or its
    ///     bundled ones).
    ///   - certificateChain: this client's certificate chain, PEM, for servers that require
    ///     one (mutual TLS). Give both it and `privateKey`, or neither.
    ///   - privateKey: the client certificate's private key, PEM (unencrypted).
    public static func tls(
        rootCertificates: String? = nil, certificateChain: String? = nil, privateKey: String? = nil
    ) -> ChannelCredentials {
        precondition(
            (certificateChain == nil) == (privateKey == nil),
            "ChannelCredentials.tls: give both the client certificate chain and its private key, or neither")
        return ChannelCredentials(kind: .tls(
            rootCertificates: rootCertificates, certificateChain: certificateChain, privateKey: privateKey))
    }

    /// Whether the connection is encrypted.
    public var isTLS: Bool {
        if case .tls = kind { return true }
        return false
    }

    /// `plaintext`, `TLS` or `TLS with a client certificate`.
    public var description: String {
        switch kind {
        case .insecure: return "plaintext"
        case .tls(_, let chain, _): return chain == nil ? "TLS" : "TLS with a client certificate"
        }
    }

    /// Creates the C credentials; the caller releases them. The C core copies the PEM text.
    func makeCCredentials() -> OpaquePointer? {
        switch kind {
        case .insecure:
            return grpc_insecure_credentials_create()
        case .tls(let roots, let chain, let key):
            return withOptionalCString(roots) { roots in
                withOptionalCString(chain) { chain in
                    withOptionalCString(key) { key in
                        guard let chain, let key else {
                            return grpc_ssl_credentials_create(roots, nil, nil, nil)
                        }
                        var pair = grpc_ssl_pem_key_cert_pair(private_key: key, cert_chain: chain)
                        return grpc_ssl_credentials_create(roots, &pair, nil, nil)
                    }
                }
            }
        }
    }
}

/// Calls `body` with a C string for `string`, or NULL for nil; valid only during `body`.
private func withOptionalCString<Result>(
    _ string: String?, _ body: (UnsafePointer<CChar>?) -> Result
) -> Result {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
