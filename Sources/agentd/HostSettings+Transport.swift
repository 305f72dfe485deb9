import AgentConfig
import AgentHost
import GRPCTransport

extension HostSettings {
    /// Plaintext, TLS, or mutual TLS, as `[host] tls_*` say.
    var serverCredentials: ServerCredentials {
        guard let certificate = tlsCertificate, let key = tlsKey else { return .insecure }
        return .tls(
            certificateChain: certificate.contents, privateKey: key.contents,
            clientCertificateAuthority: tlsClientCA?.contents)
    }

    /// The host's configuration: these settings, `listen` possibly overridden.
    func hostConfiguration(listen: String, maxMessageBytes: Int? = nil, rpcTimeout: Duration? = nil) -> AgentHost.Configuration {
        AgentHost.Configuration(
            listen: listen, maxMessageBytes: maxMessageBytes ?? self.maxMessageBytes,
            rpcTimeout: rpcTimeout ?? self.rpcTimeout,
            queueLimits: .init(messages: queueLimitMessages, bytes: queueLimitBytes),
            credentials: serverCredentials, authTokens: authTokens)
    }
}

extension RuntimeConfiguration {
    /// Plaintext, or TLS (with a client certificate) as `[runtime] tls_*` say.
    var hostCredentials: ChannelCredentials {
        guard connectsWithTLS else { return .insecure }
        return .tls(
            rootCertificates: tlsCA?.contents, certificateChain: tlsCertificate?.contents,
            privateKey: tlsKey?.contents)
    }
}
