import AgentConfig
import AgentHost
import GRPCTransport
import HostLauncher

extension HostSettings {
    /// The host's configuration: these settings, `listen` possibly overridden.
    func hostConfiguration(listen: String, maxMessageBytes: Int? = nil, rpcTimeout: Duration? = nil) -> AgentHost.Configuration {
        HostLauncher.configuration(self, listen: listen, maxMessageBytes: maxMessageBytes, rpcTimeout: rpcTimeout)
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
