import AgentCore
import AgentHost
import AgentRuntime
import AgentTestSupport
import Foundation
import GRPCTransport
import Logging
import Testing

@Suite("The runtime and WorkerClient with a host that requires TLS and a token")
struct SecureHostTests {
    static let tokens = ["runtime-token-0123456789abcdef", "client-token-0123456789abcdef"]

    /// A plugin folder with the echo (C) and greeter (Swift) plugins.
    static func pluginFolder() throws -> String {
        let directory = NSTemporaryDirectory() + "agentd-secure-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (file, product) in [("a-echo.so", "EchoAgent"), ("b-greeter.so", "GreeterAgent")] {
            try FileManager.default.copyItem(
                atPath: "\(RuntimeHarness.buildDirectory)/lib\(product).so", toPath: "\(directory)/\(file)")
        }
        return directory
    }

    static func mutualTLSClient(_ pki: TestCertificates) -> ChannelCredentials {
        .tls(rootCertificates: pki.ca, certificateChain: pki.client.certificate, privateKey: pki.client.privateKey)
    }

    /// Starts a runtime with `configuration` (plugins from a fresh folder), runs `body`, and
    /// stops it.
    static func withRuntime(
        _ configure: (inout AgentRuntime.Configuration) -> Void,
        _ body: (AgentRuntime, LogCapture) async throws -> Void
    ) async throws {
        let directory = try pluginFolder()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = AgentRuntime.Configuration(
            embeddedHost: .init(listen: "127.0.0.1:0"), rpcTimeout: .seconds(10), workers: 2,
            pluginDirectory: directory, watchPlugins: false)
        configure(&configuration)
        let log = LogCapture()
        let runtime = try AgentRuntime(configuration: configuration, logger: log.logger())
        do {
            try await runtime.start()
            try await body(runtime, log)
        } catch {
            await runtime.shutdown()
            throw error
        }
        await runtime.shutdown()
    }

    /// An RPC to the echo agent and a publish the greeter answers, through `client`.
    static func exercise(_ client: WorkerClient) async throws {
        let response = try await client.send(
            Array(#"{"text": "secure"}"#.utf8), messageType: "Echo", to: AgentID(type: "echo", key: "default"),
            timeout: .seconds(10))
        #expect(String(decoding: response.payload, as: UTF8.self) == #"{"text": "secure"}"#)
        try await client.subscribe(topicType: "greeting-replies")
        let events = client.events()
        try client.publish(Array(#"{"name": "Ada"}"#.utf8), messageType: "Greeting", to: TopicID(type: "greetings", source: "s1"))
        var iterator = events.makeAsyncIterator()
        let reply = try #require(await iterator.next())
        #expect(reply.messageType == "GreetingReply")
        #expect(String(decoding: reply.payload, as: UTF8.self) == #"{"text":"Hello, Ada!"}"#)
    }

    @Test("an embedded host with mutual TLS and tokens: the runtime joins it (with the host's first token) and a client with a certificate and a token is served")
    func embeddedMutualTLSAndTokens() async throws {
        let pki = try TestCertificates.shared()
        try await Self.withRuntime({ configuration in
            configuration.embeddedHost.credentials = .tls(
                certificateChain: pki.server.certificate, privateKey: pki.server.privateKey,
                clientCertificateAuthority: pki.ca)
            configuration.embeddedHost.authTokens = Self.tokens
            configuration.hostCredentials = Self.mutualTLSClient(pki)
        }) { runtime, log in
            #expect(runtime.plugins.map(\.name) == ["echo-plugin", "greeter-plugin"])
            #expect(log.records { $0.message == "agent type refused by the host" }.isEmpty)
            let listening = try #require(log.records { $0.message == "host listening" }.first)
            #expect(listening.metadata["host.transport"] == "mutual TLS")
            #expect(listening.metadata["host.auth"] == "bearer token")
            let connected = try #require(log.records { $0.message == "runtime connected" }.first)
            #expect(connected.metadata["host.transport"] == "TLS with a client certificate")
            #expect(connected.metadata["host.auth"] == "bearer token")

            let client = try WorkerClient(
                address: runtime.hostAddress!, credentials: Self.mutualTLSClient(pki), authToken: Self.tokens[1])
            try await Self.exercise(client)
            await client.close()
            #expect(log.records { $0.message == "call without a valid authorization token refused" }.isEmpty)
            for record in log.all {
                for token in Self.tokens {
                    #expect(!"\(record.message) \(record.metadata)".contains(token))
                }
            }
        }
    }

    @Test("a client without the token, or with plaintext, is refused by a TLS host with tokens")
    func refusedClients() async throws {
        let pki = try TestCertificates.shared()
        try await Self.withRuntime({ configuration in
            configuration.embeddedHost.credentials = .tls(
                certificateChain: pki.server.certificate, privateKey: pki.server.privateKey)
            configuration.embeddedHost.authTokens = Self.tokens
            configuration.hostCredentials = .tls(rootCertificates: pki.ca)
        }) { runtime, log in
            let address = runtime.hostAddress!
            let noToken = try WorkerClient(address: address, credentials: .tls(rootCertificates: pki.ca))
            let refused = await #expect(throws: TransportError.self) { _ = try await noToken.subscriptions() }
            #expect(refused?.status == Status(.unauthenticated, "a valid authorization token is required"))
            await #expect(throws: RuntimeError.self) {
                _ = try await noToken.send(
                    Array("{}".utf8), messageType: "Echo", to: AgentID(type: "echo", key: "default"), timeout: .seconds(10))
            }
            await noToken.close()
            #expect(await log.wait(since: 0) { $0.message == "call without a valid authorization token refused" } != nil)

            let wrongToken = try WorkerClient(
                address: address, credentials: .tls(rootCertificates: pki.ca), authToken: "not-the-token-0123456789")
            await #expect(throws: RuntimeError.self) {
                _ = try await wrongToken.send(
                    Array("{}".utf8), messageType: "Echo", to: AgentID(type: "echo", key: "default"), timeout: .seconds(10))
            }
            await wrongToken.close()

            let plaintext = try WorkerClient(address: address, authToken: Self.tokens[1])
            await #expect(throws: RuntimeError.self) {
                _ = try await plaintext.send(
                    Array("{}".utf8), messageType: "Echo", to: AgentID(type: "echo", key: "default"), timeout: .seconds(1))
            }
            await plaintext.close()

            // And the runtime keeps serving clients that have both.
            let client = try WorkerClient(address: address, credentials: .tls(rootCertificates: pki.ca), authToken: Self.tokens[1])
            try await Self.exercise(client)
            await client.close()
        }
    }

    @Test("a runtime joins a separate TLS host with its own token")
    func separateHost() async throws {
        let pki = try TestCertificates.shared()
        let host = try AgentHost(
            configuration: .init(
                listen: "127.0.0.1:0",
                credentials: .tls(certificateChain: pki.server.certificate, privateKey: pki.server.privateKey),
                authTokens: Self.tokens),
            logger: Logger(label: "test.host", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await Self.withRuntime({ configuration in
            configuration.hostAddress = "localhost:\(host.port)"
            configuration.hostCredentials = .tls(rootCertificates: pki.ca)
            configuration.authToken = Self.tokens[0]
        }) { runtime, log in
            #expect(runtime.embeddedHost == nil)
            #expect(log.records { $0.message == "agent type refused by the host" }.isEmpty)
            let client = try WorkerClient(
                address: "127.0.0.1:\(host.port)", credentials: .tls(rootCertificates: pki.ca), authToken: Self.tokens[1])
            try await Self.exercise(client)
            await client.close()
        }
        await host.shutdown()
    }

    @Test("a runtime that would reach its TLS embedded host with plaintext does not start, and says why")
    func plaintextToTLSEmbeddedHost() async throws {
        let pki = try TestCertificates.shared()
        let error = await #expect(throws: RuntimeError.self) {
            try await Self.withRuntime({ configuration in
                configuration.embeddedHost.credentials = .tls(
                    certificateChain: pki.server.certificate, privateKey: pki.server.privateKey)
            }) { _, _ in }
        }
        #expect(error?.message.hasPrefix("the embedded host listens with TLS, but the runtime would connect to it with plaintext") == true)
    }
}
