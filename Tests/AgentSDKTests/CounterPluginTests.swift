import AgentPluginABI
import AgentSDK
import Foundation
import Testing

/// The example C plugin that keeps state (Plugins/CounterAgent/counter.c), libCounterAgent.so,
/// driven through its C entry by the fake runtime, which checkpoints as the runtime does.
@Suite("libCounterAgent.so through its C entry", .serialized)
struct CounterPluginTests {
    let id = AgentID(type: "counter", key: "k")

    func load(_ runtime: FakeRuntime) throws -> LoadedPlugin {
        try #require(runtime.load(entry: try ExamplePlugin.entry("libCounterAgent.so")))
    }

    func count(_ value: Int64, key: String = "k") -> FakeCall.Answer {
        .reply(messageType: "Count", contentType: "application/json", json: #"{"count": \#(value), "key": "\#(key)"}"#)
    }

    @Test("counter-plugin 1.0.0 offers counter: Add and Get, subscribed to counter-adds, with snapshot and restore")
    func descriptor() throws {
        let plugin = try load(FakeRuntime())
        #expect(String(cString: plugin.descriptor.pointee.name) == "counter-plugin")
        #expect(String(cString: plugin.descriptor.pointee.version) == "1.0.0")
        let counter = try #require(plugin.agentType("counter")).pointee
        let handlers = UnsafeBufferPointer(start: counter.handlers, count: counter.handler_count)
        #expect(handlers.map { String(cString: $0.message_type) } == ["Add", "Get"])
        let subscriptions = UnsafeBufferPointer(start: counter.subscriptions, count: counter.subscription_count)
        #expect(subscriptions.map { String(cString: $0.topic) } == ["counter-adds"])
        #expect(counter.snapshot != nil && counter.restore != nil && counter.create != nil && counter.destroy != nil)
    }

    @Test("Add adds and says so; Get reads without a checkpoint; the store holds {\"count\": N}")
    func addAndGet() async throws {
        let runtime = FakeRuntime()
        let agent = try load(runtime).activate(id)
        defer { agent.destroy() }
        #expect(try await agent.handle("Add", json: #"{"amount": 5}"#, rpc: true) == count(5))
        #expect(try await agent.handle("Add", json: #"{"amount": -2}"#, rpc: true) == count(3))
        #expect(try await agent.handle("Add", json: #" { "note": "x", "amount": 4 } "#, rpc: false,
                                       topic: TopicID(type: "counter-adds", source: "k")) == .returned(status: AGENTD_OK.rawValue))
        #expect(try await agent.handle("Get", json: "{}", rpc: true) == count(7))
        #expect(runtime.reportsStateChanges("counter"))
        #expect(runtime.snapshotsTaken == 3)
        #expect(runtime.checkpoints.map(\.state) == [#"{"count": 5}"#, #"{"count": 3}"#, #"{"count": 7}"#])
    }

    @Test("the count survives retirement and a restart: the next activation restores it")
    func survives() async throws {
        let runtime = FakeRuntime()
        let first = try load(runtime).activate(id)
        _ = try await first.handle("Add", json: #"{"amount": 41}"#, rpc: true)
        _ = try await first.handle("Add", json: #"{"amount": 1}"#, rpc: true)
        first.retire()
        let second = try load(runtime).activate(id)
        defer { second.destroy() }
        #expect(try await second.handle("Get", json: "{}", rpc: true) == count(42))
        let other = try load(runtime).activate(AgentID(type: "counter", key: "other"))
        defer { other.destroy() }
        #expect(try await other.handle("Get", json: "{}", rpc: true) == count(0, key: "other"))
    }

    @Test("a key is written as a JSON string whatever it holds")
    func keyEscaped() async throws {
        let agent = try load(FakeRuntime()).activate(AgentID(type: "counter", key: "a \"quoted\" key\\ ✓"))
        defer { agent.destroy() }
        #expect(try await agent.handle("Get", json: "{}", rpc: true)
                == .reply(messageType: "Count", contentType: "application/json",
                          json: #"{"count": 0, "key": "a \"quoted\" key\\ ✓"}"#))
    }

    @Test("an Add that is not {\"amount\": <integer>} is refused with the reason, and changes nothing",
          arguments: [
            (#"{}"#, #"has no "amount" member"#),
            (#"{"amount": 1.5}"#, "not an integer"),
            (#"{"amount": 1e3}"#, "not an integer"),
            (#"{"amount": "3"}"#, "not an integer"),
            (#"{"amount": 9223372036854775808}"#, "not an integer within 64 bits"),
            (#"{"amount": 1,}"#, "malformed JSON in Add: expected a member name"),
            (#"[1]"#, "the top-level value is not an object"),
          ])
    func badAdd(payload: String, reason: String) async throws {
        let runtime = FakeRuntime()
        let agent = try load(runtime).activate(id)
        defer { agent.destroy() }
        _ = try await agent.handle("Add", json: #"{"amount": 1}"#, rpc: true)
        let answer = try await agent.handle("Add", json: payload, rpc: true)
        guard case .fail(let status, let message) = answer else {
            Issue.record("\(payload) was answered: \(answer)")
            return
        }
        #expect(status == AGENTD_INVALID_ARGUMENT.rawValue)
        #expect(message.contains(reason), "\(message)")
        #expect(try await agent.handle("Get", json: "{}", rpc: true) == count(1))
        #expect(runtime.checkpoints.count == 1)
    }

    @Test("an Add past 64 bits is refused and the count stays")
    func overflow() async throws {
        let agent = try load(FakeRuntime()).activate(id)
        defer { agent.destroy() }
        #expect(try await agent.handle("Add", json: #"{"amount": 9223372036854775807}"#, rpc: true) == count(.max))
        let answer = try await agent.handle("Add", json: #"{"amount": 1}"#, rpc: true)
        #expect(answer == .fail(status: AGENTD_INVALID_ARGUMENT.rawValue,
                                message: "counter: adding 1 to 9223372036854775807 would leave 64 bits; nothing was added"))
        #expect(try await agent.handle("Add", json: #"{"amount": -9223372036854775807}"#, rpc: true) == count(0))
        #expect(try await agent.handle("Add", json: #"{"amount": -9223372036854775808}"#, rpc: true) == count(.min))
    }

    @Test("restore takes {\"count\": N} however it is spaced, and the 64-bit limits",
          arguments: [
            (#"{"count": 12}"#, Int64(12)), (#" {"count":-3} "#, -3), ("{\n  \"count\": 0\n}", 0),
            (#"{"count": 9223372036854775807}"#, .max), (#"{"count": -9223372036854775808}"#, .min),
          ])
    func restore(state: String, value: Int64) async throws {
        let runtime = FakeRuntime()
        runtime.store(state, for: id)
        let agent = try load(runtime).activate(id)
        defer { agent.destroy() }
        #expect(try await agent.handle("Get", json: "{}", rpc: true) == count(value))
    }

    @Test("restore refuses anything but {\"count\": <integer>} with INVALID_ARGUMENT and an error line naming why",
          arguments: [
            ("", "empty payload"),
            ("\u{1}\u{2}binary", "unexpected character"),
            (#"{"count": 3, "extra": true}"#, #"members other than "count""#),
            (#"{"total": 3}"#, #"no "count" member"#),
            (#"{"count": "3"}"#, "not an integer"),
            (#"{"count": 3.0}"#, "not an integer"),
            (#"{"count": 9223372036854775808}"#, "not an integer within 64 bits"),
            (#"{"count": 3"#, "expected ',' or '}'"),
            ("[3]", "the top-level value is not an object"),
          ])
    func restoreRefuses(state: String, reason: String) throws {
        let runtime = FakeRuntime()
        runtime.store(state, for: id)
        let plugin = try load(runtime)
        #expect(throws: RestoreRefused(status: AGENTD_INVALID_ARGUMENT.rawValue)) { try plugin.activate(id) }
        let line = try #require(runtime.logs.last)
        #expect(line.level == AGENTD_LOG_ERROR.rawValue)
        #expect(line.agent == id)
        #expect(line.text.hasPrefix(#"counter: refusing a state that is not {"count": <integer>}: "#), "\(line.text)")
        #expect(line.text.contains(reason), "\(line.text)")
        #expect(runtime.storedState(id) == state)
    }

    @Test("on a runtime older than ABI 1.2 it calls nothing past the table, and every changed count is still stored",
          arguments: [FakeRuntime.HostTable.abi10, .abi11])
    func olderRuntime(table: FakeRuntime.HostTable) async throws {
        let runtime = FakeRuntime(hostTable: table)
        let agent = try load(runtime).activate(id)
        defer { agent.destroy() }
        _ = try await agent.handle("Add", json: #"{"amount": 2}"#, rpc: true)
        _ = try await agent.handle("Get", json: "{}", rpc: true)
        #expect(runtime.misuses == [])
        #expect(!runtime.reportsStateChanges("counter"))
        #expect(runtime.checkpoints.map(\.state) == [#"{"count": 2}"#])
    }
}
