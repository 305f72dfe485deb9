import AgentHost
import AgentTestSupport
import Foundation
import GRPCTransport
import ProtoWire
import Testing

@Suite("/agentd.Status/Get: the host's status as JSON")
struct HostStatusTests {
    static let token = "0123456789abcdef0123456789abcdef"

    /// The host's answer to `/agentd.Status/Get`, parsed (no client-id sent).
    static func status(_ harness: HostHarness, metadata: Metadata = Metadata()) async throws -> [String: Any] {
        let response = try await harness.channel().unary(
            method: "/agentd.Status/Get", request: MessageBuffer([UInt8]()), metadata: metadata, waitForReady: true)
        let object = try JSONSerialization.jsonObject(with: Data(response.bytes))
        return try #require(object as? [String: Any], "the status is not a JSON object")
    }

    static func workers(_ status: [String: Any]) throws -> [[String: Any]] {
        try #require(status["workers"] as? [[String: Any]])
    }

    @Test("the host's own facts: address, uptime, serving, no cluster")
    func hostFacts() async throws {
        try await withHost { harness in
            let status = try await Self.status(harness)
            let host = try #require(status["host"] as? [String: Any])
            #expect(host["address"] as? String == harness.host.address)
            let uptime = try #require(host["uptime_seconds"] as? Double)
            #expect(uptime >= 0 && uptime < 600)
            #expect(host["serving"] as? Bool == true)
            #expect(host["cluster"] is NSNull)
            #expect(try Self.workers(status).isEmpty)
        }
    }

    @Test("each connected worker: client id, peer, agent types, subscriptions, queue depth, drops, control channel")
    func workers() async throws {
        try await withHost { harness in
            let runtimeLike = try await harness.worker("runtime-like", clientID: "b-runtime")
            try await runtimeLike.register("echo")
            try await runtimeLike.register("tally")
            try await runtimeLike.subscribe(id: "s1", topicType: "greetings", agentType: "echo")
            try await runtimeLike.subscribe(id: "s2", topicTypePrefix: "orders.", agentType: "tally")
            _ = try await ControlStream.open(for: runtimeLike)
            let python = try await harness.worker("python-like", clientID: #"a-python "quoted" \back"#)
            try await python.register("planner")

            let workers = try Self.workers(try await Self.status(harness))
            #expect(workers.map { $0["client_id"] as? String } == [#"a-python "quoted" \back"#, "b-runtime"])
            let (first, second) = (workers[0], workers[1])
            #expect(first["agent_types"] as? [String] == ["planner"])
            #expect(first["subscriptions"] as? Int == 0)
            #expect(first["control_channel"] as? Bool == false)
            #expect(second["agent_types"] as? [String] == ["echo", "tally"])
            #expect(second["shared_agent_types"] as? [String] == [])
            #expect(second["subscriptions"] as? Int == 2)
            #expect(second["control_channel"] as? Bool == true)
            for worker in workers {
                #expect((worker["peer"] as? String)?.contains("127.0.0.1") == true, "\(worker)")
                #expect(worker["queued_messages"] as? Int == 0)
                #expect(worker["dropped_events"] as? Int == 0)
            }
        }
    }

    @Test("a shared agent type is listed as shared for each of its workers")
    func sharedTypes() async throws {
        try await withHost { harness in
            for name in ["one", "two"] {
                let worker = try await harness.worker(name, clientID: name)
                _ = try await worker.channel.unary(
                    method: "/agents.AgentRpc/RegisterAgent", request: MessageBuffer(Self.registerRequest("shards")),
                    metadata: {
                        var metadata = worker.metadata
                        metadata.add("agentd-shared", "1")
                        return metadata
                    }(), waitForReady: true)
            }
            let workers = try Self.workers(try await Self.status(harness))
            #expect(workers.map { $0["shared_agent_types"] as? [String] } == [["shards"], ["shards"]])
        }
    }

    @Test("a worker that leaves is no longer listed")
    func departure() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("leaving", clientID: "leaving")
            let before = try Self.workers(try await Self.status(harness))
            #expect(before.count == 1)
            await worker.disconnect()
            #expect(try await poll { try Self.workers(try await Self.status(harness)).isEmpty })
        }
    }

    @Test("on a host with tokens the status call needs one, but no client-id")
    func tokenRequired() async throws {
        try await withHost(authTokens: [Self.token]) { harness in
            let error = await #expect(throws: TransportError.self) {
                _ = try await Self.status(harness)
            }
            #expect(error?.status.code == .unauthenticated)
            let status = try await Self.status(harness, metadata: ["authorization": "Bearer \(Self.token)"])
            #expect(status["host"] != nil)
        }
    }

    /// `RegisterAgentTypeRequest{type = 1}`.
    static func registerRequest(_ type: String) -> [UInt8] {
        var writer = ProtoWriter()
        writer.stringField(1, type)
        return writer.bytes
    }
}
