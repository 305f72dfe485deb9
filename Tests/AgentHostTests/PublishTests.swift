import ProtoWire
import Foundation
import Testing

@Suite("Publishing: CloudEvents reach the connections whose agent types subscribe, unchanged and in order")
struct PublishTests {
    @Test("an event reaches exactly the connections serving a subscribed agent type (type and prefix subscriptions)")
    func routing() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let exact = try await harness.worker("exact")
            let prefix = try await harness.worker("prefix")
            let otherTopic = try await harness.worker("other-topic")
            let unsubscribed = try await harness.worker("unsubscribed")
            try await exact.register("exact-agent")
            try await exact.subscribe(id: "exact", topicType: "news", agentType: "exact-agent")
            try await prefix.register("prefix-agent")
            try await prefix.subscribe(id: "prefix", topicTypePrefix: "ne", agentType: "prefix-agent")
            try await otherTopic.register("other-agent")
            try await otherTopic.subscribe(id: "other", topicType: "newsletter", agentType: "other-agent")
            try await otherTopic.subscribe(id: "other-prefix", topicTypePrefix: "newsX", agentType: "other-agent")
            try await unsubscribed.register("idle-agent")
            // A subscription for an agent type nobody serves reaches nobody (and breaks nothing).
            try await publisher.subscribe(id: "orphan", topicType: "news", agentType: "nobody-agent")

            let sent = try publisher.publish(topicType: "news", source: "today", json: #"{"headline":"hi"}"#)

            for (receiver, agentType) in [(exact, "exact-agent"), (prefix, "prefix-agent")] {
                let log = try await receiver.catchUp(with: publisher, agentType: agentType)
                #expect(byteDifference(log.events.map(\.bytes), [sent]) == nil, "\(receiver.name)")
            }
            for (receiver, agentType) in [(otherTopic, "other-agent"), (unsubscribed, "idle-agent")] {
                let log = try await receiver.catchUp(with: publisher, agentType: agentType)
                #expect(log.events.isEmpty, "\(receiver.name) received \(log.summary)")
            }
        }
    }

    @Test("a connection whose subscriptions match an event several times receives it once")
    func oncePerConnection() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.register("alpha2")
            try await receiver.subscribe(id: "exact", topicType: "news", agentType: "alpha")
            try await receiver.subscribe(id: "prefix", topicTypePrefix: "n", agentType: "alpha")
            try await receiver.subscribe(id: "everything", topicTypePrefix: "", agentType: "alpha")
            try await receiver.subscribe(id: "second-type", topicType: "news", agentType: "alpha2")

            let sent = try publisher.publish(topicType: "news", source: "k")
            let log = try await receiver.catchUp(with: publisher, agentType: "alpha")
            #expect(byteDifference(log.events.map(\.bytes), [sent]) == nil)
        }
    }

    @Test("an event arrives byte for byte as published: attributes and JSON binary_data")
    func jsonEventUnchanged() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.subscribe(id: "s", topicTypePrefix: "alpha:", agentType: "alpha")
            var attributes = DataMessageBuilder.pythonAttributes(dataSchema: "Greeting")
            attributes.append(("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"))
            attributes.append(("ünïcode-ключ", "värde ✓"))
            let sent = DataMessageBuilder.cloudEvent(
                id: UUID().uuidString, topicType: "alpha:", topicSource: "key/with/slashes", attributes: attributes,
                binaryData: Array(#"{"text": "hello \u00e9", "n": [1, 2, 3]}"#.utf8))
            try publisher.send(sent)
            let log = try await receiver.waitFor("the event") { !$0.events.isEmpty }
            #expect(byteDifference(log.events.first?.bytes, sent) == nil)
            #expect(log.events.first?.topicSource == "key/with/slashes")
        }
    }

    @Test("an event arrives byte for byte as published: protobuf proto_data, binary bytes and all")
    func protobufEventUnchanged() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.subscribe(id: "s", topicType: "default", agentType: "alpha")
            // Every byte value, including what is not valid UTF-8.
            let value = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let sent = DataMessageBuilder.cloudEvent(
                id: UUID().uuidString, topicType: "default", topicSource: "default",
                attributes: DataMessageBuilder.pythonAttributes(
                    dataSchema: "example.Reading", contentType: "application/x-protobuf"),
                protoData: AnyMessage(typeURL: "type.googleapis.com/example.Reading", value: value))
            try publisher.send(sent)
            let log = try await receiver.waitFor("the event") { !$0.events.isEmpty }
            #expect(byteDifference(log.events.first?.bytes, sent) == nil)
        }
    }

    @Test("1000 events arrive at every subscriber in the publisher's order")
    func order() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let first = try await harness.worker("first")
            let second = try await harness.worker("second")
            try await first.register("alpha")
            try await first.subscribe(id: "a", topicType: "ticks", agentType: "alpha")
            try await second.register("beta")
            try await second.subscribe(id: "b", topicTypePrefix: "tick", agentType: "beta")
            var sent: [[UInt8]] = []
            for index in 0..<1000 {
                sent.append(try publisher.publish(topicType: "ticks", source: "clock", id: "tick-\(index)", json: "{\"n\": \(index)}"))
            }
            for receiver in [first, second] {
                let log = try await receiver.waitFor("1000 events", timeout: .seconds(30)) { $0.events.count >= 1000 }
                #expect(log.events.count == 1000, "\(receiver.name)")
                #expect(byteDifference(log.events.map(\.bytes), sent) == nil, "\(receiver.name): events out of order or changed")
            }
        }
    }

    @Test("the publisher's own connection receives its event when it serves a subscribed agent type (its other agents must see it)")
    func publisherServesSubscribedType() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("worker")
            try await worker.register("listener")
            try await worker.subscribe(id: "s", topicType: "news", agentType: "listener")
            let sent = try worker.publish(topicType: "news", source: "k")
            let log = try await worker.catchUp(with: worker, agentType: "listener")
            #expect(byteDifference(log.events.map(\.bytes), [sent]) == nil)
        }
    }

    @Test("a subscription added by another connection for an agent type delivers to the type's owner")
    func subscriptionAddedByAnotherConnection() async throws {
        try await withHost { harness in
            let owner = try await harness.worker("owner")
            let admin = try await harness.worker("admin")
            try await owner.register("alpha")
            try await admin.register("admin-agent")
            try await admin.subscribe(id: "for-alpha", topicType: "alerts", agentType: "alpha")
            let sent = try admin.publish(topicType: "alerts", source: "k")
            let log = try await owner.catchUp(with: admin, agentType: "alpha")
            #expect(byteDifference(log.events.map(\.bytes), [sent]) == nil)
            // The connection that added the subscription does not serve "alpha": nothing for it.
            #expect(try await admin.catchUp(with: admin, agentType: "admin-agent").events.isEmpty)
        }
    }

    @Test("after RemoveSubscription the topic no longer reaches the connection")
    func removedSubscriptionStopsDelivery() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.subscribe(id: "s", topicType: "news", agentType: "alpha")
            let before = try publisher.publish(topicType: "news", source: "k", id: "before")
            _ = try await receiver.waitFor("the first event") { !$0.events.isEmpty }
            try await receiver.unsubscribe(id: "s")
            try publisher.publish(topicType: "news", source: "k", id: "after")
            let log = try await receiver.catchUp(with: publisher, agentType: "alpha")
            #expect(log.events.map(\.bytes) == [before])
        }
    }

    @Test("events start reaching a connection as soon as it registers a type someone subscribed earlier")
    func registrationAfterSubscription() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.subscribe(id: "s", topicType: "news", agentType: "late")
            // Nobody serves "late" yet: this one reaches nobody.
            try publisher.publish(topicType: "news", source: "k", id: "unserved")
            try await publisher.register("publisher-agent")
            try await publisher.catchUp(with: publisher, agentType: "publisher-agent")
            try await receiver.register("late")
            let sent = try publisher.publish(topicType: "news", source: "k", id: "served")
            let log = try await receiver.catchUp(with: publisher, agentType: "late")
            #expect(byteDifference(log.events.map(\.bytes), [sent]) == nil)
        }
    }
}
