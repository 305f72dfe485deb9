import AgentCore
import Testing

@Suite("SubscriptionIndex")
struct SubscriptionIndexTests {
    @Test("exact topic types and prefixes both match, each agent type once")
    func matching() throws {
        var index = SubscriptionIndex()
        try index.insert(Subscription(id: "1", agentType: "greeter", kind: .topicType("greetings")))
        try index.insert(Subscription(id: "2", agentType: "logger", kind: .topicTypePrefix("greet")))
        try index.insert(Subscription(id: "3", agentType: "greeter", kind: .topicTypePrefix("greetings")))
        try index.insert(Subscription(id: "4", agentType: "other", kind: .topicType("farewells")))
        #expect(index.agentTypes(matching: "greetings") == ["greeter", "logger"])
        #expect(index.agentTypes(matching: "greetings-2") == ["greeter", "logger"])
        #expect(index.agentTypes(matching: "gree") == [])
        #expect(index.agentTypes(matching: "farewells") == ["other"])
        #expect(index.agentTypes(matching: "nothing") == [])
    }

    @Test("removing a subscription stops its matches; others with the same pattern stay")
    func removal() throws {
        var index = SubscriptionIndex()
        try index.insert(Subscription(id: "a", agentType: "x", kind: .topicTypePrefix("t:")))
        try index.insert(Subscription(id: "b", agentType: "y", kind: .topicTypePrefix("t:")))
        try index.insert(Subscription(id: "c", agentType: "x", kind: .topicType("t:1")))
        #expect(index.remove(id: "a")?.agentType == "x")
        #expect(index.agentTypes(matching: "t:1") == ["x", "y"])
        index.remove(id: "c")
        #expect(index.agentTypes(matching: "t:1") == ["y"])
        #expect(index.remove(id: "missing") == nil)
        #expect(index.count == 1)
    }

    @Test("a taken id or the same agent type and topic twice is refused")
    func duplicates() throws {
        var index = SubscriptionIndex()
        try index.insert(Subscription(id: "1", agentType: "a", kind: .topicType("t")))
        #expect(throws: SubscriptionError.self) {
            try index.insert(Subscription(id: "1", agentType: "b", kind: .topicType("u")))
        }
        let error = #expect(throws: SubscriptionError.self) {
            try index.insert(Subscription(id: "2", agentType: "a", kind: .topicType("t")))
        }
        #expect(error?.code == .duplicate)
        // The same string as a prefix is a different subscription.
        try index.insert(Subscription(id: "3", agentType: "a", kind: .topicTypePrefix("t")))
        // After removal the pair may be subscribed again.
        index.remove(id: "1")
        try index.insert(Subscription(id: "4", agentType: "a", kind: .topicType("t")))
    }

    @Test("AutoGen's rules for agent and topic types", arguments: [
        ("agent", "topic", true), ("my.agent-1_x", "a:b=c", true), ("agent/x", "t", false),
        ("", "t", false), ("a", "bad topic", false), ("a", "", false), ("ägent", "tôpic", true),
    ])
    func validation(agentType: String, topicType: String, valid: Bool) {
        let subscription = Subscription(id: "s", agentType: agentType, kind: .topicType(topicType))
        #expect((try? subscription.validate()) != nil ? valid : !valid)
    }

    @Test("matching cost does not depend on unrelated subscriptions")
    func unrelatedSubscriptionsAreNotScanned() throws {
        // 50,000 unrelated exact and prefix subscriptions: the index still answers from the
        // one hash entry and the trie path of the topic type (a scan would also be correct,
        // so this checks the answer stays right at that size; the speed is in the benchmark).
        var index = SubscriptionIndex()
        for i in 0..<25_000 {
            try index.insert(Subscription(id: "e\(i)", agentType: "a\(i)", kind: .topicType("topic\(i)")))
            try index.insert(Subscription(id: "p\(i)", agentType: "b\(i)", kind: .topicTypePrefix("pre\(i):")))
        }
        #expect(index.agentTypes(matching: "topic123") == ["a123"])
        #expect(index.agentTypes(matching: "pre77:x") == ["b77"])
        #expect(index.agentTypes(matching: "pre7:x") == ["b7"])
    }
}
