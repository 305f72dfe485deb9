import GRPCTransport
import Testing

@Suite("Every call must carry client-id metadata")
struct ClientIDTests {
    static let unaryMethods = ["RegisterAgent", "AddSubscription", "RemoveSubscription", "GetSubscriptions"]
    static let streamMethods = ["OpenChannel", "OpenControlChannel"]

    @Test("a unary call without client-id is INVALID_ARGUMENT \"client-id metadata not found.\"", arguments: unaryMethods)
    func unaryWithoutClientID(method: String) async throws {
        try await withHost { harness in
            let channel = harness.channel()
            let error = await #expect(throws: TransportError.self) {
                _ = try await channel.unary(
                    method: "/agents.AgentRpc/\(method)", request: MessageBuffer([UInt8]()), waitForReady: true)
            }
            #expect(error?.status == Status(.invalidArgument, "client-id metadata not found."))
        }
    }

    @Test("a stream without client-id ends at once with INVALID_ARGUMENT \"client-id metadata not found.\"", arguments: streamMethods)
    func streamWithoutClientID(method: String) async throws {
        try await withHost { harness in
            let recorder = DataStreamRecorder()
            _ = try harness.channel().makeStreamingCall(
                method: "/agents.AgentRpc/\(method)", waitForReady: true, handler: recorder)
            let log = try #require(await recorder.log.wait { $0.status != nil })
            #expect(log.status == Status(.invalidArgument, "client-id metadata not found."))
            #expect(log.messages.isEmpty)
        }
    }

    @Test("an empty client-id counts as none")
    func emptyClientID() async throws {
        try await withHost { harness in
            let error = await #expect(throws: TransportError.self) {
                _ = try await harness.channel().unary(
                    method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer([UInt8]()),
                    metadata: ["client-id": ""], waitForReady: true)
            }
            #expect(error?.status == Status(.invalidArgument, "client-id metadata not found."))
        }
    }

    @Test("a refused call leaves the host serving calls that do carry client-id")
    func refusalDoesNotHurtOthers() async throws {
        try await withHost { harness in
            let channel = harness.channel()
            await #expect(throws: TransportError.self) {
                _ = try await channel.unary(
                    method: "/agents.AgentRpc/RegisterAgent", request: MessageBuffer([UInt8]()), waitForReady: true)
            }
            let worker = try await harness.worker("after-refusal")
            try await worker.register("alpha")
            #expect(try await worker.subscriptions() == [])
        }
    }
}
