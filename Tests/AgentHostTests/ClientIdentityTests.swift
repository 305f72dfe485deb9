import AgentCore
@testable import AgentHost
import AgentTestSupport
import Foundation
import GRPCTransport
import ProtoWire
import Testing

/// A client id belongs to one live stream at a time, and to the credential it first came with;
/// no error tells a caller another client's id.
@Suite("Another client's id cannot be taken over", .serialized)
struct ClientIdentityTests {
    /// Opens `OpenChannel` under `clientID` and waits for how the host ends it.
    static func refusedStream(_ channel: Channel, clientID: String, token: String? = nil) async throws -> Status? {
        var metadata: Metadata = ["client-id": clientID]
        if let token { metadata.add("authorization", "Bearer \(token)") }
        let recorder = DataStreamRecorder()
        _ = try channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: recorder)
        return await recorder.log.wait { $0.status != nil }?.status
    }

    /// The owner still serves its agent type: a caller's request reaches it.
    static func expectStillServes(_ owner: RawWorker, _ agentType: String, caller: RawWorker) async throws {
        let id = "still-\(UUID().uuidString)"
        try caller.request(id: id, target: AgentRef(agentType, "k"), payload: .json("Ask", id))
        let request = try await owner.waitForRequest(saying: id)
        try owner.respond(to: request.requestID)
        #expect(try await caller.waitForResponse(to: id).error.isEmpty)
    }

    @Test("a second OpenChannel with a live client's id is ALREADY_EXISTS; the first keeps its stream, types and RPCs")
    func secondStreamRefused() async throws {
        try await withHost { harness in
            let owner = try await harness.worker("owner")
            let caller = try await harness.worker("caller")
            try await owner.register("alpha")
            try await owner.subscribe(id: "s", topicType: "news", agentType: "alpha")
            let status = try await Self.refusedStream(harness.channel(), clientID: owner.clientID)
            #expect(status?.code == .alreadyExists)
            #expect(owner.log.value.status == nil, "the first stream is untouched")
            try await Self.expectStillServes(owner, "alpha", caller: caller)
            #expect(try await caller.subscriptions().map(\.id) == ["s"])
        }
    }

    @Test("once its stream has ended, the same client (same credential) connects again under its id at once")
    func reconnectAfterTheStreamEnds() async throws {
        try await withHost { harness in
            let first = try await harness.worker("first")
            let caller = try await harness.worker("caller")
            try await first.register("alpha")
            await first.disconnect()
            // The host learns of the reset at once; the reconnection is admitted as soon as it has.
            var again: RawWorker?
            #expect(await poll(timeout: .seconds(10)) {
                again = try? await harness.worker("again", clientID: first.clientID)
                return again != nil
            })
            let second = try #require(again)
            try await second.register("alpha")
            try await Self.expectStillServes(second, "alpha", caller: caller)
        }
    }

    @Test("RegisterAgent's refusal and a request to an unconnected owner never name the holder's client id")
    func errorsDoNotRevealIDs() async throws {
        try await withHost { harness in
            let holder = try await harness.worker("holder")
            let other = try await harness.worker("other")
            try await holder.register("alpha")
            let error = await #expect(throws: TransportError.self) { try await other.register("alpha") }
            #expect(error?.status.code == .invalidArgument)
            #expect(error?.status.message.contains("alpha") == true)
            #expect(error?.status.message.contains(holder.clientID) == false, "\(error?.status.message ?? "")")

            // A type registered by a client that has no data channel open.
            let absentID = "absent-\(UUID().uuidString)"
            _ = try await harness.channel().unary(
                method: "/agents.AgentRpc/RegisterAgent",
                request: MessageBuffer(ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: "beta")),
                metadata: ["client-id": absentID], waitForReady: true)
            try other.request(id: "to-absent", target: AgentRef("beta", "k"))
            let answer = try await other.waitForResponse(to: "to-absent")
            #expect(!answer.error.isEmpty)
            #expect(!answer.error.contains(absentID), "\(answer.error)")
        }
    }

    @Test("with mutual TLS, a client id belongs to its certificate: another certificate is PERMISSION_DENIED on every call, even after the owner left; the owner comes back")
    func mutualTLS() async throws {
        let pki = try TestCertificates.shared()
        let owner = ChannelCredentials.tls(rootCertificates: pki.ca, certificateChain: pki.client.certificate, privateKey: pki.client.privateKey)
        let intruder = ChannelCredentials.tls(
            rootCertificates: pki.ca, certificateChain: pki.otherClient.certificate, privateKey: pki.otherClient.privateKey)
        try await withHost(
            credentials: .tls(certificateChain: pki.server.certificate, privateKey: pki.server.privateKey, clientCertificateAuthority: pki.ca),
            clientCredentials: owner
        ) { harness in
            let first = try await harness.worker("first")
            try await first.register("alpha")
            let intruderChannel = harness.channel(credentials: intruder)
            func expectDenied() async throws {
                #expect(try await Self.refusedStream(intruderChannel, clientID: first.clientID)?.code == .permissionDenied)
                for (method, request) in [
                    ("RegisterAgent", ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: "gamma")),
                    ("RemoveSubscription", ControlPlaneCodec.encodeRemoveSubscriptionRequest(id: "s")),
                ] {
                    let error = await #expect(throws: TransportError.self) {
                        _ = try await intruderChannel.unary(
                            method: "/agents.AgentRpc/\(method)", request: MessageBuffer(request),
                            metadata: ["client-id": first.clientID], waitForReady: true)
                    }
                    #expect(error?.status.code == .permissionDenied, "\(method): \(error?.status.description ?? "")")
                }
            }
            try await expectDenied()
            await first.disconnect()
            let caller = try await harness.worker("caller")
            #expect(await poll { harness.host.table.localAgentTypes()["alpha"] == nil }, "the owner's departure was seen")
            try await expectDenied()
            // The owner, with its certificate, is back under its id.
            let again = try await harness.worker("again", clientID: first.clientID)
            try await again.register("alpha")
            try await Self.expectStillServes(again, "alpha", caller: caller)
            // The intruder is served under an id of its own.
            let own = try await RawWorker.connect(to: harness.target, name: "intruder", credentials: intruder)
            try await own.register("delta")
            await own.disconnect()
        }
    }

    @Test("with several tokens, a client id belongs to the token it first came with")
    func tokens() async throws {
        let tokens = ["first-token-0123456789abcdef", "second-token-0123456789abcdef"]
        try await withHost(authTokens: tokens) { harness in
            let first = try await harness.worker("first", authToken: tokens[0])
            try await first.register("alpha")
            let channel = harness.channel()
            #expect(try await Self.refusedStream(channel, clientID: first.clientID, token: tokens[1])?.code == .permissionDenied)
            await first.disconnect()
            #expect(await poll { harness.host.table.localAgentTypes()["alpha"] == nil })
            #expect(try await Self.refusedStream(channel, clientID: first.clientID, token: tokens[1])?.code == .permissionDenied)
            let again = try await harness.worker("again", clientID: first.clientID, authToken: tokens[0])
            try await again.register("alpha")
        }
    }
}
