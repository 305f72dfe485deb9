import GRPCTransport
import Testing

@Suite("Host shutdown")
struct ShutdownTests {
    @Test("a caller with an RPC pending gets an error response before its stream ends")
    func pendingRPCAnswered() async throws {
        try await withHost { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try caller.request(id: "pending", target: AgentRef("echo", "k"))
            _ = try await target.waitForRequest()

            await harness.host.shutdown()

            let log = try await caller.waitFor("the end of the stream") { $0.status != nil }
            // Callbacks come in order, so a response recorded by now came before the status.
            #expect(log.responses.map(\.requestID) == ["pending"])
            #expect(log.responses.first?.error.isEmpty == false)
            #expect(log.status?.code == .unavailable)
        }
    }

    @Test("every worker's streams end with UNAVAILABLE")
    func streamsEnd() async throws {
        try await withHost { harness in
            let first = try await harness.worker("first")
            let second = try await harness.worker("second")
            let control = try await ControlStream.open(for: second)
            await harness.host.shutdown()
            for worker in [first, second] {
                let log = try await worker.waitFor("the end of the stream") { $0.status != nil }
                #expect(log.status?.code == .unavailable, "\(worker.name)")
            }
            let controlLog = try await control.waitFor("the end of the control stream") { $0.status != nil }
            #expect(controlLog.status?.code == .unavailable)
        }
    }
}
