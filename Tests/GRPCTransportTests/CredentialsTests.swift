import AgentTestSupport
import Foundation
import GRPCTransport
import Testing

/// Serialized: TLS handshakes are costly under AddressSanitizer, and a burst of them slows the
/// first connections of the transport's other tests.
@Suite("TLS and mutual TLS", .serialized)
struct CredentialsTests {
    static func certificates() throws -> TestCertificates { try TestCertificates.shared() }

    /// A server with `credentials` on 127.0.0.1, port 0, and a channel to it with
    /// `clientCredentials`, torn down at the end of `body`.
    func withServer(
        _ credentials: ServerCredentials, client clientCredentials: ChannelCredentials, host: String = "127.0.0.1",
        _ body: (EchoRouter, Channel) async throws -> Void
    ) async throws {
        let router = EchoRouter()
        let server = try Server(
            configuration: .init(address: "127.0.0.1:0", credentials: credentials), router: router)
        let channel = Channel(configuration: .init(target: "\(host):\(server.port)", credentials: clientCredentials))
        do {
            try await body(router, channel)
        } catch {
            await channel.shutdown()
            await server.shutdown()
            throw error
        }
        await channel.shutdown()
        await server.shutdown()
    }

    static func tlsServer(clientCA: Bool = false) throws -> ServerCredentials {
        let pki = try certificates()
        return .tls(
            certificateChain: pki.server.certificate, privateKey: pki.server.privateKey,
            clientCertificateAuthority: clientCA ? pki.ca : nil)
    }

    /// A unary call that must fail; its status code. Never waits for the connection, so a
    /// handshake that fails ends the call at once.
    func failingCall(_ channel: Channel) async -> StatusCode? {
        let error = await #expect(throws: TransportError.self) {
            _ = try await channel.unary(
                method: "/test.Echo/Unary", request: MessageBuffer(text: "x"), deadline: .after(.seconds(10)))
        }
        return error?.status.code
    }

    @Test("a TLS client and a TLS server exchange unary calls and streams")
    func tlsWorks() async throws {
        let pki = try Self.certificates()
        try await withServer(try Self.tlsServer(), client: .tls(rootCertificates: pki.ca)) { router, channel in
            let response = try await channel.unary(
                method: "/test.Echo/Unary", request: MessageBuffer(text: "over TLS"), waitForReady: true)
            #expect(response.text == "over TLS")
            let collector = StreamCollector()
            let call = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
            for index in 0..<10 { call.send(MessageBuffer(text: "m\(index)")) }
            call.halfClose()
            let log = try #require(await collector.log.wait { $0.status != nil })
            #expect(log.status == .ok)
            #expect(log.messages.map { String(decoding: $0, as: UTF8.self) } == (0..<10).map { "m\($0)" })
        }
    }

    @Test("the server certificate's DNS name is checked too (localhost)")
    func tlsByHostName() async throws {
        let pki = try Self.certificates()
        try await withServer(try Self.tlsServer(), client: .tls(rootCertificates: pki.ca), host: "localhost") { _, channel in
            let response = try await channel.unary(
                method: "/test.Echo/Unary", request: MessageBuffer(text: "by name"), waitForReady: true)
            #expect(response.text == "by name")
        }
    }

    @Test("a plaintext client cannot call a TLS server; the server keeps serving TLS clients")
    func plaintextClientToTLSServer() async throws {
        let pki = try Self.certificates()
        try await withServer(try Self.tlsServer(), client: .insecure) { router, channel in
            #expect(await failingCall(channel) == .unavailable)
            #expect(router.log.value.accepted.isEmpty)
        }
        // The same server kind still serves a TLS client after refusing a plaintext one.
        try await withServer(try Self.tlsServer(), client: .tls(rootCertificates: pki.ca)) { _, channel in
            let plaintext = Channel(configuration: .init(target: channel.configuration.target))
            #expect(await failingCall(plaintext) == .unavailable)
            await plaintext.shutdown()
            let response = try await channel.unary(
                method: "/test.Echo/Unary", request: MessageBuffer(text: "ok"), waitForReady: true)
            #expect(response.text == "ok")
        }
    }

    @Test("a TLS client cannot call a plaintext server")
    func tlsClientToPlaintextServer() async throws {
        let pki = try Self.certificates()
        try await withServer(.insecure, client: .tls(rootCertificates: pki.ca)) { router, channel in
            #expect(await failingCall(channel) == .unavailable)
            #expect(router.log.value.accepted.isEmpty)
        }
    }

    @Test("a client refuses a server whose certificate another authority signed")
    func untrustedServer() async throws {
        let pki = try Self.certificates()
        let strangerCA = try String(contentsOfFile: pki.directory + "/stranger-ca.pem", encoding: .utf8)
        try await withServer(try Self.tlsServer(), client: .tls(rootCertificates: strangerCA)) { router, channel in
            #expect(await failingCall(channel) == .unavailable)
            #expect(router.log.value.accepted.isEmpty)
        }
    }

    @Test("mutual TLS: a client without a certificate is refused")
    func mutualTLSWithoutCertificate() async throws {
        let pki = try Self.certificates()
        try await withServer(try Self.tlsServer(clientCA: true), client: .tls(rootCertificates: pki.ca)) { router, channel in
            #expect(await failingCall(channel) == .unavailable)
            #expect(router.log.value.accepted.isEmpty)
        }
    }

    @Test("mutual TLS: a client whose certificate another authority signed is refused")
    func mutualTLSWithStrangerCertificate() async throws {
        let pki = try Self.certificates()
        let client = ChannelCredentials.tls(
            rootCertificates: pki.ca, certificateChain: pki.strangerClient.certificate,
            privateKey: pki.strangerClient.privateKey)
        try await withServer(try Self.tlsServer(clientCA: true), client: client) { router, channel in
            #expect(await failingCall(channel) == .unavailable)
            #expect(router.log.value.accepted.isEmpty)
        }
    }

    @Test("mutual TLS: a client with a certificate the authority signed is served, unary and streaming")
    func mutualTLSWithCertificate() async throws {
        let pki = try Self.certificates()
        let client = ChannelCredentials.tls(
            rootCertificates: pki.ca, certificateChain: pki.client.certificate, privateKey: pki.client.privateKey)
        try await withServer(try Self.tlsServer(clientCA: true), client: client) { _, channel in
            let response = try await channel.unary(
                method: "/test.Echo/Unary", request: MessageBuffer(text: "mutual"), waitForReady: true)
            #expect(response.text == "mutual")
            let collector = StreamCollector()
            let call = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
            call.send(MessageBuffer(text: "streamed"))
            call.halfClose()
            let log = try #require(await collector.log.wait { $0.status != nil })
            #expect(log.status == .ok)
            #expect(log.messages == [Array("streamed".utf8)])
        }
    }

    @Test("a private key that does not parse fails to listen, with an error naming the address and TLS")
    func badKey() throws {
        let pki = try Self.certificates()
        let credentials = ServerCredentials.tls(certificateChain: pki.server.certificate, privateKey: "not a key")
        let error = #expect(throws: TransportError.self) {
            _ = try Server(configuration: .init(address: "127.0.0.1:0", credentials: credentials), router: EchoRouter())
        }
        #expect(error?.code == .bindFailed)
        #expect(error?.message.hasPrefix("cannot listen on 127.0.0.1:0 with TLS") == true)
    }

    @Test("credentials describe their kind and never their key")
    func descriptions() throws {
        let pki = try Self.certificates()
        #expect(ServerCredentials.insecure.description == "plaintext")
        #expect(try Self.tlsServer().description == "TLS")
        #expect(try Self.tlsServer(clientCA: true).description == "mutual TLS")
        #expect(try Self.tlsServer(clientCA: true).requiresClientCertificate)
        #expect(ChannelCredentials.insecure.description == "plaintext")
        #expect(ChannelCredentials.tls(rootCertificates: pki.ca).description == "TLS")
        let withCertificate = ChannelCredentials.tls(
            rootCertificates: pki.ca, certificateChain: pki.client.certificate, privateKey: pki.client.privateKey)
        #expect(withCertificate.description == "TLS with a client certificate")
        #expect(!"\(try Self.tlsServer())".contains("PRIVATE"))
        #expect(!"\(withCertificate)".contains("PRIVATE"))
    }
}
