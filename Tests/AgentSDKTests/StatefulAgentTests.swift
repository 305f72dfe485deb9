import AgentPluginABI
import AgentSDK
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
}
