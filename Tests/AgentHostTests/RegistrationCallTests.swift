import ProtoWire
import GRPCTransport
import Testing

@Suite("RegisterAgent, AddSubscription, RemoveSubscription and GetSubscriptions")
struct RegistrationCallTests {
    // MARK: RegisterAgent

    @Test("an agent type held by another connection is INVALID_ARGUMENT naming the type, not its holder")
    func typeTakenByAnotherClient() async throws {
        try await withHost { harness in
            let first = try await harness.worker("first")
            let second = try await harness.worker("second")
            try await first.register("alpha")
            let error = await #expect(throws: TransportError.self) { try await second.register("alpha") }
            #expect(error?.status.code == .invalidArgument)
            #expect(error?.status.message.contains("alpha") == true)
            #expect(error?.status.message.contains("another client") == true)
            #expect(error?.status.message.contains(first.clientID) == false)
            // The refused client can still claim a free type.
            try await second.register("beta")
        }
    }

    @Test("the same connection registering its type again is OK, and the type stays its own")
    func sameClientRegistersAgain() async throws {
        try await withHost { harness in
            let owner = try await harness.worker("owner")
            let caller = try await harness.worker("caller")
            try await owner.register("alpha")
            try await owner.register("alpha")
            // Still routed to the owner.
            try caller.request(id: "1", target: AgentRef("alpha", "k"), payload: .json("Ask", "still yours?"))
            let request = try await owner.waitForRequest(saying: "still yours?")
            #expect(request.target == AgentRef("alpha", "k"))
        }
    }

    @Test("an agent type outside AutoGen's rule is INVALID_ARGUMENT naming it", arguments: ["bad type/x", "", "a/b", "tab\there", "semi;colon"])
    func invalidType(type: String) async throws {
        try await withHost { harness in
            let worker = try await harness.worker("worker")
            let error = await #expect(throws: TransportError.self) { try await worker.register(type) }
            #expect(error?.status.code == .invalidArgument)
            #expect(error?.status.message.contains("'\(type)'") == true)
        }
    }

    @Test("agent types with letters, digits, '_', '-', '.' and non-ASCII letters are accepted", arguments: ["alpha", "Agent_1", "my-agent.v2", "агент"])
    func validType(type: String) async throws {
        try await withHost { harness in
            let worker = try await harness.worker("worker")
            try await worker.register(type)
        }
    }

    // MARK: AddSubscription

    @Test("a subscription id already taken is ALREADY_EXISTS, even from another connection")
    func duplicateSubscriptionID() async throws {
        try await withHost { harness in
            let first = try await harness.worker("first")
            let second = try await harness.worker("second")
            try await first.subscribe(id: "s1", topicType: "news", agentType: "alpha")
            let sameClient = await #expect(throws: TransportError.self) {
                try await first.subscribe(id: "s1", topicType: "weather", agentType: "alpha")
            }
            #expect(sameClient?.status.code == .alreadyExists)
            #expect(sameClient?.status.message.contains("s1") == true)
            let otherClient = await #expect(throws: TransportError.self) {
                try await second.subscribe(id: "s1", topicTypePrefix: "sport", agentType: "beta")
            }
            #expect(otherClient?.status.code == .alreadyExists)
            // The original subscription is untouched.
            #expect(try await first.subscriptions() == [
                SubscriptionRecord(id: "s1", kind: .topicType, topic: "news", agentType: "alpha"),
            ])
        }
    }

    @Test("the same (agent type, topic) pair under a new id is ALREADY_EXISTS")
    func duplicatePair() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("worker")
            try await worker.subscribe(id: "s1", topicType: "news", agentType: "alpha")
            try await worker.subscribe(id: "p1", topicTypePrefix: "news", agentType: "alpha")
            let exact = await #expect(throws: TransportError.self) {
                try await worker.subscribe(id: "s2", topicType: "news", agentType: "alpha")
            }
            #expect(exact?.status.code == .alreadyExists)
            let prefix = await #expect(throws: TransportError.self) {
                try await worker.subscribe(id: "p2", topicTypePrefix: "news", agentType: "alpha")
            }
            #expect(prefix?.status.code == .alreadyExists)
            // Another agent type may subscribe to the same topic.
            try await worker.subscribe(id: "s3", topicType: "news", agentType: "beta")
            #expect(try await worker.subscriptions().map(\.id) == ["p1", "s1", "s3"])
        }
    }

    @Test("a subscription with neither a type nor a prefix subscription is INVALID_ARGUMENT")
    func emptySubscription() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("worker")
            var idOnly = ProtoWriter()
            idOnly.stringField(1, "s1")
            let error = await #expect(throws: TransportError.self) { try await worker.addSubscription(idOnly.bytes) }
            #expect(error?.status.code == .invalidArgument)
            let noSubscription = await #expect(throws: TransportError.self) { try await worker.unary("AddSubscription", []) }
            #expect(noSubscription?.status.code == .invalidArgument)
            #expect(try await worker.subscriptions() == [])
        }
    }

    @Test("a subscription with no id, a bad agent type or a bad topic type is INVALID_ARGUMENT")
    func invalidSubscriptions() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("worker")
            let invalid = [
                SubscriptionRecord(id: "", kind: .topicType, topic: "news", agentType: "alpha"),
                SubscriptionRecord(id: "s1", kind: .topicType, topic: "news", agentType: "bad type"),
                SubscriptionRecord(id: "s2", kind: .topicType, topic: "news/today", agentType: "alpha"),
                SubscriptionRecord(id: "s3", kind: .topicType, topic: "", agentType: "alpha"),
            ]
            for subscription in invalid {
                let error = await #expect(throws: TransportError.self, "\(subscription)") {
                    try await worker.addSubscription(subscription.encoded)
                }
                #expect(error?.status.code == .invalidArgument, "\(subscription)")
            }
            #expect(try await worker.subscriptions() == [])
        }
    }

    // MARK: RemoveSubscription and GetSubscriptions

    @Test("removing an unknown id is NOT_FOUND; another client's subscription is PERMISSION_DENIED; the owner's removal sticks")
    func removeSubscription() async throws {
        try await withHost { harness in
            let owner = try await harness.worker("owner")
            let other = try await harness.worker("other")
            try await owner.subscribe(id: "s1", topicType: "news", agentType: "alpha")

            let unknown = await #expect(throws: TransportError.self) { try await owner.unsubscribe(id: "nope") }
            #expect(unknown?.status.code == .notFound)
            #expect(unknown?.status.message.contains("nope") == true)

            let foreign = await #expect(throws: TransportError.self) { try await other.unsubscribe(id: "s1") }
            #expect(foreign?.status.code == .permissionDenied)
            #expect(try await other.subscriptions().map(\.id) == ["s1"])

            try await owner.unsubscribe(id: "s1")
            #expect(try await other.subscriptions() == [])
            let again = await #expect(throws: TransportError.self) { try await owner.unsubscribe(id: "s1") }
            #expect(again?.status.code == .notFound)
            // The id and the pair are free again.
            try await other.subscribe(id: "s1", topicType: "news", agentType: "alpha")
        }
    }

    @Test("GetSubscriptions lists every client's subscriptions, type and prefix, as they were added")
    func listsAllClients() async throws {
        try await withHost { harness in
            let first = try await harness.worker("first")
            let second = try await harness.worker("second")
            let observer = try await harness.worker("observer")
            try await first.subscribe(id: "a-news", topicType: "news", agentType: "alpha")
            try await first.subscribe(id: "a-direct", topicTypePrefix: "alpha:", agentType: "alpha")
            try await second.subscribe(id: "b-all", topicTypePrefix: "", agentType: "beta")
            let expected = [
                SubscriptionRecord(id: "a-direct", kind: .topicTypePrefix, topic: "alpha:", agentType: "alpha"),
                SubscriptionRecord(id: "a-news", kind: .topicType, topic: "news", agentType: "alpha"),
                SubscriptionRecord(id: "b-all", kind: .topicTypePrefix, topic: "", agentType: "beta"),
            ]
            #expect(try await observer.subscriptions() == expected)
            #expect(try await first.subscriptions() == expected)
        }
    }
}
