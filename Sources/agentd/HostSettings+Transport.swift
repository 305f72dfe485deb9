import AgentConfig
import GRPCTransport

extension RuntimeConfiguration {
    /// Plaintext, or TLS (with a client certificate) as `[runtime] tls_*` say.
    var hostCredentials: ChannelCredentials {
        guard connectsWithTLS else { return .insecure }
        return .tls(
            rootCertificates: tlsCA?.contents, certificateChain: tlsCertificate?.contents,
            privateKey: tlsKey?.contents)
    }
}
