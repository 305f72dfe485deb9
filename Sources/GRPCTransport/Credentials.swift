import CGRPC

/// How a server secures its connections.
public struct ServerCredentials: Sendable, Hashable {
    enum Kind: Hashable {
        case insecure
    }
    let kind: Kind

    /// Plaintext HTTP/2 (what AutoGen's Python workers speak).
    public static let insecure = ServerCredentials(kind: .insecure)

    /// Creates the C credentials; the caller releases them.
    func makeCCredentials() -> OpaquePointer? {
        switch kind {
        case .insecure: return grpc_insecure_server_credentials_create()
        }
    }
}

/// How a client secures its connection.
public struct ChannelCredentials: Sendable, Hashable {
    enum Kind: Hashable {
        case insecure
    }
    let kind: Kind

    /// Plaintext HTTP/2.
    public static let insecure = ChannelCredentials(kind: .insecure)

    /// Creates the C credentials; the caller releases them.
    func makeCCredentials() -> OpaquePointer? {
        switch kind {
        case .insecure: return grpc_insecure_credentials_create()
        }
    }
}
