import AgentTestSupport
import ProtoWire
import Foundation
import GRPCTransport
import Testing

@Suite("A host with tokens admits only calls carrying one (authorization: Bearer)")
struct AuthorizationTests {
    static let tokens = ["0123456789abcdef0123456789abcdef", "second-worker-token_+/=~."]
    static let refusal = Status(.unauthenticated, "a valid authorization token is required")
    static let unaryMethods = ["RegisterAgent", "AddSubscription", "RemoveSubscription", "GetSubscriptions"]
    static let streamMethods = ["OpenChannel", "OpenControlChannel"]

    /// `authorization` values the host must refuse, and why.
    static let wrongAuthorizations: [(String, String)] = [
        ("an unknown token", "Bearer ffffffffffffffffffffffffffffffff"),
        ("a prefix of a token", "Bearer 0123456789abcdef0123456789abcde"),
        ("a token with a character more", "Bearer 0123456789abcdef0123456789abcdef0"),
        ("a token with another scheme", "Basic 0123456789abcdef0123456789abcdef"),
        ("a token without a scheme", "0123456789abcdef0123456789abcdef"),
        ("an empty bearer token", "Bearer "),
        ("two tokens run together", "Bearer 0123456789abcdef0123456789abcdefsecond-worker-token_+/=~."),
    ]

    /// The refusal's log line: a warning naming the peer and the client id.
    static func expectRefusalLogged(_ log: LogCapture, clientID: String, method: String) async throws {
        let line = try #require(await log.first {
            $0.message == "call without a valid authorization token refused" && $0.metadata["client.id"] == clientID
                && $0.metadata["grpc.method"] == "/agents.AgentRpc/\(method)"
        })
        #expect(line.level == .warning)
        #expect(line.metadata["peer"]?.contains("127.0.0.1") == true)
    }

    /// No log line shows a token, right or wrong.
    static func expectNoTokenLogged(_ log: LogCapture, also others: [String] = []) {
        for record in log.all {
            for secret in tokens + others where secret.count >= 8 {
                #expect(!record.fullText.contains(secret), "a log line shows a token: \(record.message)")
            }
        }
    }

    @Test("a unary call without a token is UNAUTHENTICATED, logged with peer and client id", arguments: unaryMethods)
    func unaryWithoutToken(method: String) async throws {
        let log = LogCapture()
        try await withHost(authTokens: Self.tokens, logger: log.logger()) { harness in
            let error = await #expect(throws: TransportError.self) {
                _ = try await harness.channel().unary(
                    method: "/agents.AgentRpc/\(method)", request: MessageBuffer([UInt8]()),
                    metadata: ["client-id": "intruder-1"], waitForReady: true)
            }
            #expect(error?.status == Self.refusal)
            try await Self.expectRefusalLogged(log, clientID: "intruder-1", method: method)
            #expect(log.all.first { $0.metadata["client.id"] == "intruder-1" }?.metadata["authorization"] == "missing")
        }
        Self.expectNoTokenLogged(log)
    }

    @Test("a stream without a token ends at once with UNAUTHENTICATED, logged", arguments: streamMethods)
    func streamWithoutToken(method: String) async throws {
        let log = LogCapture()
        try await withHost(authTokens: Self.tokens, logger: log.logger()) { harness in
            let recorder = DataStreamRecorder()
            _ = try harness.channel().makeStreamingCall(
                method: "/agents.AgentRpc/\(method)", metadata: ["client-id": "intruder-2"], waitForReady: true,
                handler: recorder)
            let ended = try #require(await recorder.log.wait { $0.status != nil })
            #expect(ended.status == Self.refusal)
            #expect(ended.messages.isEmpty)
            try await Self.expectRefusalLogged(log, clientID: "intruder-2", method: method)
        }
    }

    @Test("a wrong token is refused on unary calls and streams, and never logged", arguments: wrongAuthorizations)
    func wrongToken(_ why: String, authorization: String) async throws {
        let log = LogCapture()
        try await withHost(authTokens: Self.tokens, logger: log.logger()) { harness in
            let metadata: Metadata = ["client-id": "intruder-3", "authorization": authorization]
            let error = await #expect(throws: TransportError.self) {
                _ = try await harness.channel().unary(
                    method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer([UInt8]()), metadata: metadata,
                    waitForReady: true)
            }
            #expect(error?.status == Self.refusal)
            let recorder = DataStreamRecorder()
            _ = try harness.channel().makeStreamingCall(
                method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: recorder)
            #expect(await recorder.log.wait { $0.status != nil }?.status == Self.refusal)
            try await Self.expectRefusalLogged(log, clientID: "intruder-3", method: "GetSubscriptions")
            try await Self.expectRefusalLogged(log, clientID: "intruder-3", method: "OpenChannel")
            #expect(log.all.filter { $0.metadata["client.id"] == "intruder-3" }.allSatisfy {
                $0.metadata["authorization"] == "invalid"
            })
        }
        Self.expectNoTokenLogged(log, also: [String(authorization.split(separator: " ").last ?? "")])
    }

    @Test("workers with either token register, subscribe, publish and relay RPCs")
    func rightTokens() async throws {
        let log = LogCapture()
        try await withHost(authTokens: Self.tokens, logger: log.logger()) { harness in
            let publisher = try await harness.worker("publisher", authToken: Self.tokens[0])
            let receiver = try await harness.worker("receiver", authToken: Self.tokens[1])
            try await receiver.register("listener")
            try await receiver.subscribe(id: "news", topicType: "news", agentType: "listener")
            #expect(try await publisher.subscriptions().map(\.id) == ["news"])
            let sent = try publisher.publish(topicType: "news", source: "today", json: #"{"headline":"hi"}"#)
            let received = try await receiver.catchUp(with: publisher, agentType: "listener")
            #expect(received.events.map(\.bytes) == [sent])
            try publisher.request(id: "1", target: AgentRef("listener", "k"), payload: .json("Ask", "question-1"))
            let request = try await receiver.waitForRequest(saying: "question-1")
            try receiver.respond(to: request.requestID, payload: .json("Answer", #"{"ok": true}"#))
            let response = try await publisher.waitForResponse(to: "1")
            #expect(response.error.isEmpty)
            try await receiver.unsubscribe(id: "news")
            #expect(try await publisher.subscriptions().isEmpty)
        }
        #expect(!log.all.contains { $0.message == "call without a valid authorization token refused" })
        Self.expectNoTokenLogged(log)
    }

    @Test("the scheme is case-insensitive, as RFC 6750 allows")
    func schemeCase() async throws {
        try await withHost(authTokens: Self.tokens) { harness in
            for scheme in ["bearer", "BEARER", "Bearer"] {
                let response = try await harness.channel().unary(
                    method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer([UInt8]()),
                    metadata: ["client-id": "c", "authorization": "\(scheme) \(Self.tokens[1])"], waitForReady: true)
                #expect(response.bytes.isEmpty)
            }
        }
    }

    @Test("a host without tokens admits calls with or without one")
    func noTokensConfigured() async throws {
        try await withHost { harness in
            let plain = try await harness.worker("plain")
            let withToken = try await harness.worker("with-token", authToken: "whatever-token-it-sends")
            try await plain.register("a")
            try await withToken.register("b")
            #expect(try await withToken.subscriptions() == [])
        }
    }

    @Test("a host with mutual TLS and tokens serves a worker with a certificate and a token, and refuses one without the token; it logs how it listens")
    func mutualTLSAndToken() async throws {
        let pki = try TestCertificates.shared()
        let log = LogCapture()
        try await withHost(
            credentials: .tls(
                certificateChain: pki.server.certificate, privateKey: pki.server.privateKey,
                clientCertificateAuthority: pki.ca),
            authTokens: Self.tokens,
            clientCredentials: .tls(
                rootCertificates: pki.ca, certificateChain: pki.client.certificate, privateKey: pki.client.privateKey),
            logger: log.logger()
        ) { harness in
            let listening = try #require(await log.first { $0.message == "host listening" })
            #expect(listening.metadata["host.transport"] == "mutual TLS")
            #expect(listening.metadata["host.auth"] == "bearer token")
            #expect(!log.all.contains { $0.message.hasPrefix("host listening with plaintext") })

            let worker = try await harness.worker("secure", authToken: Self.tokens[0])
            try await worker.register("secure-agent")
            #expect(try await worker.subscriptions() == [])
            let error = await #expect(throws: TransportError.self) {
                _ = try await harness.channel().unary(
                    method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer([UInt8]()),
                    metadata: ["client-id": "no-token"], waitForReady: true)
            }
            #expect(error?.status == Self.refusal)
        }
    }

    @Test("a plaintext host says so when it starts")
    func plaintextIsVisible() async throws {
        let log = LogCapture()
        try await withHost(logger: log.logger()) { _ in
            let listening = try #require(await log.first { $0.message == "host listening" })
            #expect(listening.metadata["host.transport"] == "plaintext")
            #expect(listening.metadata["host.auth"] == "none")
            let notice = try #require(await log.first { $0.message.hasPrefix("host listening with plaintext HTTP/2") })
            #expect(notice.level == .notice)
        }
    }
}
