import AgentPluginABI
import AgentSDK
import Foundation
import Testing

/// The example Swift plugin that keeps state (Plugins/TallyAgent/Tally.swift), libTallyAgent.so,
/// driven through its C entry by the fake runtime, which checkpoints as the runtime does.
@Suite("libTallyAgent.so through its C entry")
struct TallyPluginTests {
    let id = AgentID(type: "tally", key: "shop")

    /// `TallyTotals` as the plugin answers it.
    struct Totals: Decodable, Equatable {
        var key: String
        var totals: [String: Int]
        var total: Int
    }

    func load(_ runtime: FakeRuntime) throws -> LoadedPlugin {
        try #require(runtime.load(entry: try ExamplePlugin.entry("libTallyAgent.so")))
    }

    func totals(_ answer: FakeCall.Answer) throws -> Totals {
        guard case .reply(let messageType, _, let json) = answer, messageType == "TallyTotals" else {
            throw UnexpectedAnswer(answer: answer)
        }
        return try JSONDecoder().decode(Totals.self, from: Data(json.utf8))
    }

    @Test("TallyAdd (RPC or event) adds and is checkpointed; TallyGet reads without a checkpoint")
    func addAndGet() async throws {
        let runtime = FakeRuntime()
        let agent = try load(runtime).activate(id)
        defer { agent.destroy() }
        #expect(try totals(await agent.handle("TallyAdd", json: #"{"item": "apples", "amount": 3}"#, rpc: true))
                == Totals(key: "shop", totals: ["apples": 3], total: 3))
        _ = try await agent.handle("TallyAdd", json: #"{"item": "pears", "amount": 2}"#, rpc: false,
                                   topic: TopicID(type: "tally-items", source: "shop"))
        #expect(try totals(await agent.handle("TallyGet", json: "{}", rpc: true))
                == Totals(key: "shop", totals: ["apples": 3, "pears": 2], total: 5))
        #expect(runtime.reportsStateChanges("tally"))
        #expect(runtime.snapshotsTaken == 2)
        #expect(runtime.checkpoints.map(\.state) == [
            #"{"totals":{"apples":3}}"#, #"{"totals":{"apples":3,"pears":2}}"#,
        ])
    }

    @Test("the totals survive retirement; the instance's life shows in the log at debug level")
    func survivesRetirement() async throws {
        let runtime = FakeRuntime()
        let first = try load(runtime).activate(id)
        _ = try await first.handle("TallyAdd", json: #"{"item": "apples", "amount": 3}"#, rpc: true)
        first.retire()
        let second = try load(runtime).activate(id)
        defer { second.destroy() }
        #expect(try totals(await second.handle("TallyGet", json: "{}", rpc: true)).totals == ["apples": 3])
        let lines = runtime.logs.filter { $0.agent == id }
        #expect(lines.map(\.text) == [
            "tally shop: created", "tally shop: released with 1 item(s)", "tally shop: created",
            "tally shop: restored 1 item(s)",
        ])
        #expect(lines.allSatisfy { $0.level == AGENTD_LOG_DEBUG.rawValue })
    }

    @Test("a refused TallyAdd changes nothing and is not checkpointed")
    func refusedAdd() async throws {
        let runtime = FakeRuntime()
        let agent = try load(runtime).activate(id)
        defer { agent.destroy() }
        _ = try await agent.handle("TallyAdd", json: #"{"item": "x", "amount": 9223372036854775807}"#, rpc: true)
        #expect(try await agent.handle("TallyAdd", json: #"{"item": "x", "amount": 1}"#, rpc: true)
                == .fail(status: AGENTD_INVALID_ARGUMENT.rawValue, message: "tally: adding 1 to x would overflow; nothing was added"))
        #expect(try await agent.handle("TallyAdd", json: #"{"item": "", "amount": 1}"#, rpc: true)
                == .fail(status: AGENTD_INVALID_ARGUMENT.rawValue, message: "tally: the item name is empty"))
        #expect(runtime.checkpoints.count == 1)
    }

    @Test("restore refuses totals with an unnamed item, and state that does not decode")
    func restoreRefuses() throws {
        for state in [#"{"totals": {"": 1}}"#, #"{"totals": [1]}"#, "not json"] {
            let runtime = FakeRuntime()
            runtime.store(state, for: id)
            let plugin = try load(runtime)
            #expect(throws: RestoreRefused(status: AGENTD_INVALID_ARGUMENT.rawValue)) { try plugin.activate(id) }
            #expect(runtime.logs.contains { $0.level == AGENTD_LOG_ERROR.rawValue && $0.text.contains("restoring tally/shop failed") },
                    "\(state): \(runtime.logs.map(\.text))")
        }
    }
}
