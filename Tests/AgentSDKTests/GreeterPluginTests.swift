import AgentPluginABI
import AgentSDK
import Foundation
import Testing

/// The example plugin as the runtime meets it: libGreeterAgent.so, opened with dlopen, through
/// its exported `agentd_plugin_entry`.
@Suite("libGreeterAgent.so through its C entry")
struct GreeterPluginTests {
    static func entry() throws -> agentd_plugin_entry_fn {
        try ExamplePlugin.entry("libGreeterAgent.so")
    }

    @Test("greeter-plugin 1.0.0 offers the agent type greeter, subscribed to greetings")
    func descriptor() throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(entry: try Self.entry()))
        #expect(String(cString: plugin.descriptor.pointee.name) == "greeter-plugin")
        #expect(String(cString: plugin.descriptor.pointee.version) == "1.0.0")
        let greeter = try #require(plugin.agentType("greeter")).pointee
        let subscriptions = UnsafeBufferPointer(start: greeter.subscriptions, count: greeter.subscription_count)
        #expect(subscriptions.map { String(cString: $0.topic) } == ["greetings"])
        #expect(subscriptions.map(\.kind) == [AGENTD_SUBSCRIBE_TOPIC_TYPE])
    }

    @Test("a Greeting event is answered with a GreetingReply on greeting-replies, same source")
    func event() async throws {
        let runtime = FakeRuntime()
        let plugin = try #require(runtime.load(entry: try Self.entry()))
        let greeter = try plugin.create(AgentID(type: "greeter", key: "s1"))
        defer { greeter.destroy() }
        let answer = try await greeter.handle("Greeting", json: #"{"name": "Ada"}"#, rpc: false,
                                              topic: TopicID(type: "greetings", source: "s1"))
        #expect(answer == .reply(messageType: "", contentType: "", json: ""))
        #expect(runtime.publications == [FakeRuntime.Publication(
            from: AgentID(type: "greeter", key: "s1"), topic: TopicID(type: "greeting-replies", source: "s1"),
            messageType: "GreetingReply", contentType: "application/json", json: #"{"text":"Hello, Ada!"}"#)])
    }

    @Test("the greeting setting replaces Hello; the RPC answers with the reply")
    func settingAndRPC() async throws {
        let runtime = FakeRuntime(settings: ["greeting": "Hej"])
        let plugin = try #require(runtime.load(entry: try Self.entry()))
        let greeter = try plugin.create(AgentID(type: "greeter", key: "default"))
        defer { greeter.destroy() }
        #expect(try await greeter.handle("Greeting", json: #"{"name": "Ada"}"#, rpc: true)
                == .reply(messageType: "GreetingReply", contentType: "application/json", json: #"{"text":"Hej, Ada!"}"#))
        let malformed = try await greeter.handle("Greeting", json: #"{"nom": "Ada"}"#, rpc: true)
        guard case .fail(let status, let message) = malformed else {
            Issue.record("expected a failure, got \(malformed)")
            return
        }
        #expect(status == AGENTD_INVALID_ARGUMENT.rawValue)
        #expect(message.contains("Greeting"))
    }
}
