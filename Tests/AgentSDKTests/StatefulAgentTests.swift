import AgentPluginABI
import AgentSDK
import Foundation
import Testing

@Suite("StatefulAgent: snapshot and restore through the C functions")
struct StatefulAgentTests {
    @Test("a snapshot taken from one instance restores into a new one (a hot reload)")
    func moveState() async throws {
        let runtime = FakeRuntime()
        let old = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Counter.self])))
        let counter = try old.create(AgentID(type: "counter", key: "c"))
        _ = try await counter.handle("Increment", json: #"{"by": 2}"#, rpc: false)
        _ = try await counter.handle("Increment", json: #"{"by": 3}"#, rpc: false)
        let (status, state) = counter.snapshot()
        #expect(status == AGENTD_OK)
        #expect(state == #"{"count":5}"#)
        counter.destroy()

        let new = try #require(runtime.load(Plugin(name: "p", version: "2", agents: [Counter.self])))
        let successor = try new.create(AgentID(type: "counter", key: "c"))
        defer { successor.destroy() }
        #expect(successor.restore(state) == AGENTD_OK)
        #expect(try await successor.handle("GetCount", json: "{}", rpc: true)
                == .reply(messageType: "Count", contentType: "application/json", json: #"{"count":5}"#))
    }

    @Test("a snapshot that does not decode is refused with INVALID_ARGUMENT and a log line")
    func badSnapshot() throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Counter.self])))
        let counter = try plugin.create(AgentID(type: "counter", key: "c"))
        defer { counter.destroy() }
        #expect(counter.restore(#"{"total": 1}"#) == AGENTD_INVALID_ARGUMENT)
        #expect(try #require(runtime.logs.last).text.contains(#"the key "count" is missing"#))
    }

    @Test("a stored state that no longer decodes keeps the agent from starting")
    func storedStateRefused() throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Counter.self])))
        let id = AgentID(type: "counter", key: "c")
        runtime.store(#"{"count": "many"}"#, for: id)
        #expect(throws: RestoreRefused(status: AGENTD_INVALID_ARGUMENT.rawValue)) { try plugin.activate(id) }
        #expect(try #require(runtime.logs.last).text.contains("restoring counter/c failed"))
        #expect(runtime.storedState(id) == #"{"count": "many"}"#)
    }
}

@Suite("StatefulAgent: checkpoints, and MessageContext.stateChanged()")
struct CheckpointTests {
    let tallier = AgentID(type: "tallier", key: "k")

    @Test("the messages that call stateChanged() are checkpointed, and only those")
    func onlyChangesCheckpointed() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Tallier.self])))
        let agent = try plugin.activate(tallier)
        defer { agent.destroy() }

        _ = try await agent.handle("Tally", json: #"{"item": "apples"}"#, rpc: true)
        #expect(runtime.reportsStateChanges("tallier"))
        _ = try await agent.handle("Tally", json: #"{"item": "pears"}"#, rpc: false, topic: TopicID(type: "tallies", source: "k"))
        let read = try await agent.handle("GetTallies", json: "{}", rpc: true)
        #expect(try counts(in: read) == ["apples": 1, "pears": 1])
        #expect(runtime.snapshotsTaken == 2, "a message that did not call stateChanged() costs no snapshot")

        #expect(runtime.checkpoints == [
            .init(agent: tallier, state: #"{"counts":{"apples":1}}"#),
            .init(agent: tallier, state: #"{"counts":{"apples":1,"pears":1}}"#),
        ])
    }

    @Test("state survives retirement: the next activation restores the last checkpoint")
    func survivesRetirement() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Tallier.self])))
        let first = try plugin.activate(tallier)
        for item in ["a", "b", "a"] {
            _ = try await first.handle("Tally", json: #"{"item": "\#(item)"}"#, rpc: true)
        }
        first.retire()

        // A runtime started afresh on the same store (here: a new load of the plugin).
        let again = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Tallier.self])))
        let second = try again.activate(tallier)
        defer { second.destroy() }
        #expect(try counts(in: await second.handle("GetTallies", json: "{}", rpc: true)) == ["a": 2, "b": 1])
        #expect(runtime.storedState(AgentID(type: "tallier", key: "other")) == nil)
    }

    @Test("an agent type that never calls stateChanged() is checkpointed whenever its snapshot changes")
    func withoutStateChanged() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Counter.self])))
        let id = AgentID(type: "counter", key: "c")
        let counter = try plugin.activate(id)
        defer { counter.destroy() }
        _ = try await counter.handle("Increment", json: #"{"by": 2}"#, rpc: false)
        _ = try await counter.handle("GetCount", json: "{}", rpc: true)
        _ = try await counter.handle("Increment", json: #"{"by": 0}"#, rpc: false)
        #expect(!runtime.reportsStateChanges("counter"))
        #expect(runtime.snapshotsTaken == 3)
        #expect(runtime.checkpoints == [.init(agent: id, state: #"{"count":2}"#)])
    }

    @Test("the same state gives the same bytes: the snapshot's keys are sorted")
    func sortedSnapshot() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Tallier.self])))
        let items = (0..<40).map { "item-\($0)" }
        var snapshots: [String] = []
        for (key, order) in [("forwards", items), ("backwards", items.reversed())] {
            let agent = try plugin.activate(AgentID(type: "tallier", key: key))
            defer { agent.destroy() }
            for item in order { _ = try await agent.handle("Tally", json: #"{"item": "\#(item)"}"#, rpc: true) }
            snapshots.append(agent.snapshot().bytes)
        }
        #expect(snapshots[0] == snapshots[1])
        let expected = "{\"counts\":{" + items.sorted().map { "\"\($0)\":1" }.joined(separator: ",") + "}}"
        #expect(snapshots[0] == expected)
    }

    @Test("a snapshot that throws fails the checkpoint: the RPC is answered with an error, the store keeps the last state")
    func failingSnapshot() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Tallier.self])))
        let agent = try plugin.activate(tallier)
        _ = try await agent.handle("Tally", json: #"{"item": "kept"}"#, rpc: true)
        let answer = try await agent.handle("Refuse", json: #"{"politely": true}"#, rpc: true)
        guard case .fail(let status, _) = answer else {
            Issue.record("the RPC was answered (\(answer)) though its checkpoint failed")
            return
        }
        #expect(status == AGENTD_FAILED.rawValue)
        #expect(runtime.logs.contains { $0.text.contains("snapshot of tallier/k failed: the widget is missing") })
        #expect(runtime.storedState(tallier) == #"{"counts":{"kept":1}}"#)

        let restarted = try plugin.activate(tallier)
        defer { restarted.destroy() }
        #expect(try counts(in: await restarted.handle("GetTallies", json: "{}", rpc: true)) == ["kept": 1])
    }

    @Test("stateChanged() in an agent type without state does nothing")
    func statelessType() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Forgetful.self])))
        let agent = try plugin.activate(AgentID(type: "forgetful", key: "f"))
        defer { agent.destroy() }
        #expect(try await agent.handle("Echo", json: #"{"text": "hi"}"#, rpc: true)
                == .reply(messageType: "Echo", contentType: "application/json", json: #"{"text":"hi"}"#))
        #expect(runtime.checkpoints.isEmpty)
        #expect(runtime.logs.isEmpty)
    }

    @Test("on a runtime older than ABI 1.2, stateChanged() calls nothing and every changed snapshot is stored",
          arguments: [FakeRuntime.HostTable.abi10, .abi11])
    func olderRuntime(table: FakeRuntime.HostTable) async throws {
        let runtime = FakeRuntime(hostTable: table)
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Tallier.self])))
        let agent = try plugin.activate(tallier)
        defer { agent.destroy() }
        _ = try await agent.handle("Tally", json: #"{"item": "x"}"#, rpc: true)
        _ = try await agent.handle("GetTallies", json: "{}", rpc: true)
        #expect(runtime.misuses == [])
        #expect(!runtime.reportsStateChanges("tallier"))
        #expect(runtime.checkpoints == [.init(agent: tallier, state: #"{"counts":{"x":1}}"#)])
        #expect(runtime.logs.isEmpty)
    }

    /// The counts of a `Tallies` answer.
    private func counts(in answer: FakeCall.Answer) throws -> [String: Int] {
        guard case .reply(let messageType, _, let json) = answer, messageType == "Tallies" else {
            throw UnexpectedAnswer(answer: answer)
        }
        return try JSONDecoder().decode(Tallies.self, from: Data(json.utf8)).counts
    }
}

struct UnexpectedAnswer: Error {
    var answer: FakeCall.Answer
}
