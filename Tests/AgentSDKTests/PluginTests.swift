import AgentPluginABI
import AgentSDK
import Testing

@Suite("Plugin.export: the C descriptor")
struct PluginTests {
    @Test("the descriptor carries the plugin, its agent types, subscriptions and handler tables")
    func descriptor() throws {
        let runtime = FakeRuntime()
        let loaded = try #require(runtime.load(Plugin(name: "test-plugin", version: "2.1.0",
                                                      agents: [Greeter.self, Counter.self])))
        let plugin = loaded.descriptor.pointee
        #expect(plugin.size == UInt32(MemoryLayout<agentd_plugin>.size))
        #expect(plugin.abi_major == UInt16(AGENTD_ABI_MAJOR))
        #expect(plugin.abi_minor == UInt16(AGENTD_ABI_MINOR))
        #expect(String(cString: plugin.name) == "test-plugin")
        #expect(String(cString: plugin.version) == "2.1.0")
        #expect(plugin.agent_type_count == 2)

        let greeter = try #require(loaded.agentType("greeter")).pointee
        #expect(greeter.size == UInt32(MemoryLayout<agentd_agent_type>.size))
        #expect(String(cString: greeter.description) == "Greets.")
        let subscriptions = UnsafeBufferPointer(start: greeter.subscriptions, count: greeter.subscription_count)
        #expect(subscriptions.map { String(cString: $0.topic) } == ["greetings", "greeter:"])
        #expect(subscriptions.map(\.kind) == [AGENTD_SUBSCRIBE_TOPIC_TYPE, AGENTD_SUBSCRIBE_TOPIC_PREFIX])
        #expect(subscriptions.allSatisfy { $0.size == UInt32(MemoryLayout<agentd_subscription>.size) })
        let handlers = UnsafeBufferPointer(start: greeter.handlers, count: greeter.handler_count)
        #expect(handlers.map { String(cString: $0.message_type) } == ["Greeting"])
        #expect(handlers.allSatisfy { $0.handle != nil && $0.size == UInt32(MemoryLayout<agentd_handler>.size) })
        #expect(greeter.create != nil && greeter.destroy != nil && greeter.context != nil)
        #expect(greeter.snapshot == nil && greeter.restore == nil)
        #expect(greeter.flags == 0, "not shared by default")

        let counter = try #require(loaded.agentType("counter")).pointee
        #expect(counter.description == nil)
        #expect(counter.subscription_count == 0)
        #expect(counter.snapshot != nil && counter.restore != nil)
        #expect(counter.flags == AGENTD_AGENT_TYPE_SHARED)
        let counterHandlers = UnsafeBufferPointer(start: counter.handlers, count: counter.handler_count)
        #expect(counterHandlers.map { String(cString: $0.message_type) } == ["GetCount", "Increment"])
    }

    final class Duplicate: Agent {
        static let type = "greeter"
        init(context: AgentContext) {}
        static func handlers(_ registry: inout HandlerRegistry<Duplicate>) {}
    }

    final class BadName: Agent {
        static let type = "bad name"
        static let subscriptions: [Subscription] = [.topicType("no spaces allowed")]
        init(context: AgentContext) {}
        static func handlers(_ registry: inout HandlerRegistry<BadName>) {}
    }

    final class TwoHandlers: Agent {
        static let type = "twice"
        init(context: AgentContext) {}
        static func handlers(_ registry: inout HandlerRegistry<TwoHandlers>) {
            registry.on(Echo.self) { _, _, _ in }
            registry.on(Echo.self) { _, _, _ in }
        }
    }

    @Test("a plugin with mistakes refuses to start and logs each of them")
    func refusal() throws {
        let runtime = FakeRuntime()
        let loaded = runtime.load(Plugin(name: "broken-plugin", version: "1.0.0",
                                         agents: [Greeter.self, Duplicate.self, BadName.self, TwoHandlers.self]))
        #expect(loaded == nil)
        let line = try #require(runtime.logs.first)
        #expect(line.level == AGENTD_LOG_ERROR.rawValue)
        #expect(line.text.contains("broken-plugin"))
        #expect(line.text.contains(#"the agent type "greeter" is listed twice"#))
        #expect(line.text.contains(#"the agent type "bad name" is not a valid AutoGen agent type"#))
        #expect(line.text.contains(#"the subscription topic "no spaces allowed""#))
        #expect(line.text.contains("twice: a second event handler for Echo"))
    }

    @Test("a runtime of another ABI major is refused with a reason")
    func otherMajor() throws {
        let runtime = FakeRuntime(abiMajor: 2)
        #expect(runtime.load(Plugin(name: "p", version: "1", agents: [Greeter.self])) == nil)
        #expect(try #require(runtime.logs.first).text.contains("plugin ABI 2.\(AGENTD_ABI_MINOR)"))
    }

    @Test("no host API table: nil, no crash")
    func noHost() {
        #expect(Plugin(name: "p", version: "1", agents: [Greeter.self]).export(nil, nil) == nil)
    }
}
