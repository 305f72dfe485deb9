import AgentPluginABI
import AgentSDK
import Foundation
import Testing

@Suite("AgentContext: send, settings")
struct AgentContextTests {
    @Test("send waits for the answer, which the runtime delivers on another thread")
    func sendAnswer() async throws {
        let runtime = FakeRuntime { request in
            let text = "\(request.target.type) says \(request.json)"
            return .answer(messageType: "Echo", json: String(decoding: try! JSONEncoder().encode(Echo(text: text)), as: UTF8.self))
        }
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Workbench.self])))
        let bench = try plugin.create(AgentID(type: "workbench", key: "default"))
        defer { bench.destroy() }
        let answer = try await bench.handle("Relay", json: #"{"target": "parrot", "text": "hi"}"#, rpc: true)
        guard case .reply(let type, _, let json) = answer else {
            Issue.record("expected a reply, got \(answer)")
            return
        }
        #expect(type == "Echo")
        #expect(try JSONDecoder().decode(Echo.self, from: Data(json.utf8)).text == #"parrot says {"text":"hi"}"#)
        let request = try #require(runtime.requests.first)
        #expect(request.from == AgentID(type: "workbench", key: "default"))
        #expect(request.target == AgentID(type: "parrot", key: "default"))
        #expect(request.messageType == "Echo")
    }

    @Test("an error answer throws an AgentError with the runtime's status and text")
    func sendError() async throws {
        let runtime = FakeRuntime { _ in .error(AGENTD_TIMEOUT.rawValue, "No answer from parrot/default within 5s.") }
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Workbench.self])))
        let bench = try plugin.create(AgentID(type: "workbench", key: "default"))
        defer { bench.destroy() }
        let answer = try await bench.handle("Relay", json: #"{"target": "parrot", "text": "hi"}"#, rpc: true)
        #expect(answer == .fail(status: AGENTD_TIMEOUT.rawValue,
                                message: "sending Echo to parrot/default failed: No answer from parrot/default within 5s."))
    }

    @Test("a send the runtime refuses at once throws, and no callback is awaited")
    func sendRefused() async throws {
        let runtime = FakeRuntime { _ in .refuse(AGENTD_UNAVAILABLE.rawValue) }
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Workbench.self])))
        let bench = try plugin.create(AgentID(type: "workbench", key: "default"))
        defer { bench.destroy() }
        let answer = try await bench.handle("Relay", json: #"{"target": "parrot", "text": "hi"}"#, rpc: true)
        guard case .fail(let status, let message) = answer else {
            Issue.record("expected a failure, got \(answer)")
            return
        }
        #expect(status == AGENTD_UNAVAILABLE.rawValue)
        #expect(message.hasPrefix("sending Echo to parrot/default failed"))
    }

    @Test("an answer of another type than expected is an error naming both")
    func sendWrongType() async throws {
        let runtime = FakeRuntime { _ in .answer(messageType: "Greeting", json: #"{"name": "x"}"#) }
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Workbench.self])))
        let bench = try plugin.create(AgentID(type: "workbench", key: "default"))
        defer { bench.destroy() }
        let answer = try await bench.handle("Relay", json: #"{"target": "parrot", "text": "hi"}"#, rpc: true)
        #expect(answer == .fail(status: AGENTD_INVALID_ARGUMENT.rawValue,
                                message: "parrot/default answered Echo with Greeting, not the expected Echo"))
    }

    @Test("settings come from the plugin's section; an absent key is nil")
    func settings() async throws {
        let plain = FakeRuntime()
        let plainPlugin = try #require(plain.load(Plugin(name: "p", version: "1", agents: [Greeter.self])))
        let hello = try plainPlugin.create(AgentID(type: "greeter", key: "default"))
        defer { hello.destroy() }
        #expect(try await hello.handle("Greeting", json: #"{"name": "Ada"}"#, rpc: true)
                == .reply(messageType: "GreetingReply", contentType: "application/json", json: #"{"text":"Hello, Ada!"}"#))
    }
}
