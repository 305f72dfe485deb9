import GRPCTransport
import Testing

@Suite("When a worker's data channel ends, the host forgets its agent types and subscriptions")
struct DisconnectTests {
    /// Opens a worker that registers `alpha` and subscribes it to `news` and to the prefix
    /// `alpha:`, holds an RPC from `watcher` pending, then ends it with `end`; returns once the
    /// host has let it go (the watcher's pending call has been answered, which the host does
    /// after forgetting it).
    private func departingWorker(
        _ harness: HostHarness, watcher: RawWorker, end: (RawWorker) async throws -> Void
    ) async throws {
        let worker = try await harness.worker("departing")
        try await worker.register("alpha")
        try await worker.subscribe(id: "alpha-news", topicType: "news", agentType: "alpha")
        try await worker.subscribe(id: "alpha-direct", topicTypePrefix: "alpha:", agentType: "alpha")
        try watcher.request(id: "pending", target: AgentRef("alpha", "k"))
        _ = try await worker.waitForRequest()
        try await end(worker)
        let answer = try await watcher.waitForResponse(to: "pending")
        #expect(!answer.error.isEmpty)
    }

    @Test("after a stream ends cleanly, its agent types are free for another client and its subscriptions are gone")
    func cleanEnd() async throws {
        try await withHost { harness in
            let watcher = try await harness.worker("watcher")
            try await watcher.subscribe(id: "watcher-own", topicType: "news", agentType: "beta")
            try await departingWorker(harness, watcher: watcher) { worker in
                let status = try await worker.endStream()
                #expect(status == .ok)
            }

            #expect(try await watcher.subscriptions().map(\.id) == ["watcher-own"])
            let successor = try await harness.worker("successor")
            try await successor.register("alpha")
            // The departed worker's subscriptions do not come back with the type: nothing
            // about "news" reaches the new owner of "alpha".
            try watcher.publish(topicType: "news", source: "k")
            try watcher.publish(topicType: "alpha:x", source: "k")
            #expect(try await successor.catchUp(with: watcher, agentType: "alpha").events.isEmpty)
        }
    }

    @Test("after a connection drops, its agent types are free for another client and its subscriptions are gone")
    func droppedConnection() async throws {
        try await withHost { harness in
            let watcher = try await harness.worker("watcher")
            try await departingWorker(harness, watcher: watcher) { worker in
                await worker.disconnect()
            }
            #expect(try await watcher.subscriptions() == [])
            let successor = try await harness.worker("successor")
            try await successor.register("alpha")
            try watcher.request(id: "after", target: AgentRef("alpha", "k"))
            let request = try await successor.waitForRequest()
            try successor.respond(to: request.requestID, payload: .json("Answer", "from successor"))
            #expect(try await watcher.waitForResponse(to: "after").payload?.text == "from successor")
        }
    }
}
