import AgentCore
import AgentRuntime
import Foundation
import Testing

@Suite("Loading plugins: refusals name the file and the reason; the runtime keeps serving")
struct PluginLoadingTests {
    @Test("bad plugins are refused one by one while the good ones serve")
    func refusals() async throws {
        try await withRuntime(
            plugins: [
                ("a-echo.so", "EchoAgent"), ("b-bad-major.so", "BadMajorPlugin"), ("c-no-entry.so", "NoEntryPlugin"),
                ("d-duplicate.so", "DuplicateTypePlugin"), ("e-failing-init.so", "FailingInitPlugin"),
            ],
            extraFiles: [("f-not-elf.so", Array("this is not a shared library".utf8))]
        ) { harness in
            let refused = harness.log.records { $0.message == "plugin refused" }
            func reason(_ file: String) -> String? {
                refused.first { $0.metadata["plugin.path"]?.hasSuffix(file) == true }?.metadata["reason"]
            }
            #expect(reason("b-bad-major.so")?.contains("ABI 99.") == true)
            #expect(reason("c-no-entry.so")?.contains("agentd_plugin_entry") == true)
            #expect(reason("d-duplicate.so")?.contains("agent type 'echo' is already served") == true)
            #expect(reason("e-failing-init.so")?.contains("returned no descriptor") == true)
            #expect(reason("f-not-elf.so")?.contains("not an ELF") == true)
            #expect(refused.count == 5)
            // The plugin's own explanation reached the log, tagged with its file.
            #expect(!harness.log.records { $0.message.contains("failing-init: refusing to start") }.isEmpty)
            // And the good plugin serves.
            #expect(harness.runtime.plugins.map(\.name) == ["echo-plugin"])
            let answer = try await harness.call("echo/default", "Echo", #"{"text": "still here"}"#)
            #expect(answer == #"{"text": "still here"}"#)
        }
    }
}

@Suite("A plugin that crashes while loading is caught by the probe")
struct PluginProbeTests {
    @Test("the crash happens in the probe process; the runtime refuses the file with the reason and keeps serving")
    func crashingPlugin() async throws {
        try await withRuntime(
            plugins: [("a-echo.so", "EchoAgent"), ("b-crashing.so", "CrashingPlugin"), ("c-greeter.so", "GreeterAgent")],
            probe: true
        ) { harness in
            let refused = harness.log.records { $0.message == "plugin refused" }
            #expect(refused.count == 1)
            #expect(refused.first?.metadata["plugin.path"]?.hasSuffix("b-crashing.so") == true)
            // (Signal 11 normally; under AddressSanitizer the probe exits with a status instead.)
            #expect(refused.first?.metadata["reason"]?.contains("crashed while loading") == true)
            #expect(harness.runtime.plugins.map(\.name) == ["echo-plugin", "greeter-plugin"])
            let answer = try await harness.call("echo/x", "Echo", #"{"text": "alive"}"#)
            #expect(answer == #"{"text": "alive"}"#)
        }
    }
}

@Suite("Dispatch into C plugins: every RPC is answered")
struct DispatchTests {
    static let plugins: [(file: String, product: String)] = [("echo.so", "EchoAgent"), ("test-agents.so", "TestAgentsPlugin")]

    @Test("an RPC reaches the handler and its answer comes back; malformed JSON gets the plugin's error")
    func echo() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let echoed = try await harness.call("echo/k1", "Echo", #"{"text": "héllo \"q\""}"#)
            #expect(echoed == #"{"text": "héllo \"q\""}"#)
            let error = await #expect(throws: RuntimeError.self) {
                _ = try await harness.call("echo/k1", "Echo", #"{"text": 12"#)
            }
            #expect(error?.message.isEmpty == false)
        }
    }

    @Test("an unknown message type, a failing handler and a silent failure are all answered with readable errors")
    func failures() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let unknown = await #expect(throws: RuntimeError.self) { _ = try await harness.call("echo/x", "Nope", "{}") }
            #expect(unknown?.message.contains("no handler for message type 'Nope'") == true)
            #expect(unknown?.message.contains("Echo") == true)
            let boom = await #expect(throws: RuntimeError.self) { _ = try await harness.call("failing/x", "Boom", "{}") }
            #expect(boom?.message == "boom: the handler failed on purpose")
            let silent = await #expect(throws: RuntimeError.self) { _ = try await harness.call("silent-fail/x", "Any", "{}") }
            #expect(silent?.message.contains("AGENTD_FAILED") == true)
            #expect(silent?.message.contains("silent-fail/x") == true)
            // A handler that returns OK without answering still answers (empty).
            let empty = try await harness.call("none/x", "Anything", "{}")
            #expect(empty == "")
        }
    }

    @Test("a handler that answers later from another thread is answered, one message at a time per agent")
    func pendingFromAnotherThread() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let answers = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<6 {
                    group.addTask { try await harness.call("deferred/same", "Later", "{}") }
                }
                for index in 0..<4 {
                    group.addTask { try await harness.call("deferred/k\(index)", "Later", "{}") }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            // The plugin fails any call that overlaps another on the same instance.
            #expect(answers.count == 10)
            #expect(answers.allSatisfy { $0.contains("\"done\": true") || $0.contains("\"done\":true") })
        }
    }

    @Test("an agent's RPC to another agent (a nested RPC) completes the original call")
    func nestedRPC() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let answer = try await harness.call("relay/r", "Relay", #"{"to_type": "echo", "to_key": "e", "text": "via relay"}"#)
            #expect(answer == #"{"text": "via relay"}"#)
            let failed = await #expect(throws: RuntimeError.self) {
                _ = try await harness.call("relay/r", "Relay", #"{"to_type": "nobody", "to_key": "e", "text": "x"}"#)
            }
            #expect(failed?.message.contains("nobody") == true)
        }
    }

    @Test("events reach the subscribed agent keyed by the topic source; a plugin's publish reaches subscribers")
    func eventsAndPublish() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            for _ in 0..<3 { try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count", source: "a")) }
            try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count-prefix:x", source: "a"))
            try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count", source: "b"))
            // Events and the RPC travel the same ordered stream, so the count is final.
            let count = try await harness.call("counter/a", "Get", "{}").replacingOccurrences(of: " ", with: "")
            #expect(count.contains(#""count":4"#))
            try await harness.client.subscribe(topicType: "notes")
            let events = harness.client.events()
            _ = try await harness.call("publisher/p", "Publish", #"{"topic": "notes", "source": "s9", "text": "hi"}"#)
            var iterator = events.makeAsyncIterator()
            let event = try #require(await iterator.next())
            #expect(event.topic == TopicID(type: "notes", source: "s9"))
            #expect(event.messageType == "Note")
            #expect(event.sender == AgentID(type: "publisher", key: "p"))
            #expect(String(decoding: event.payload, as: UTF8.self).contains("hi"))
        }
    }

    @Test("a plugin reads its own [plugin.NAME] settings")
    func settings() async throws {
        try await withRuntime(plugins: Self.plugins, settings: ["test-agents": ["colour": "teal"], "echo-plugin": ["x": "y"]]) { harness in
            let colour = try await harness.call("settings/s", "Setting", #"{"key": "colour"}"#)
            #expect(colour.contains("teal"))
            let missing = await #expect(throws: RuntimeError.self) {
                _ = try await harness.call("settings/s", "Setting", #"{"key": "x"}"#)
            }
            #expect(missing?.message.contains("no setting 'x'") == true)
        }
    }
}
