import AgentCore
@testable import AgentHost
import AgentTestSupport
import Foundation
import GRPCTransport
import Testing

@Suite("Acknowledged delivery: the host acknowledges a publish once every recipient has it, and keeps events for late subscribers")
struct DeliveryTests {
    @Test("the host answers the negotiation call (AutoGen's host answers UNIMPLEMENTED)")
    func negotiation() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("runtime")
            let answer = try await worker.channel.unary(
                method: Delivery.negotiateMethod, request: MessageBuffer([]), metadata: worker.metadata,
                deadline: .after(.seconds(10)))
            #expect(answer.count == 0)
        }
    }

    @Test("a publish is acknowledged only once the acknowledged recipient confirms it; written is enough for an AutoGen worker")
    func acknowledgedAfterConfirmation() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher", acknowledged: true)
            let runtime = try await harness.worker("runtime", acknowledged: true)
            try await runtime.register("listener")
            try await runtime.subscribe(id: "s", topicType: "news", agentType: "listener")
            for index in 0..<3 { try publisher.publish(topicType: "news", source: "k\(index)") }
            _ = try await runtime.waitFor("three events") { $0.events.count == 3 }
            // The runtime has not confirmed: nothing may be acknowledged (the host waits for
            // a confirmation up to 10 s).
            #expect(publisher.log.value.acknowledged == 0)
            try runtime.confirm(3)
            _ = try await publisher.waitFor("three acknowledged") { $0.acknowledged == 3 }

            // An AutoGen worker cannot confirm: handing the event to its stream is the end.
            let autogen = try await harness.worker("autogen")
            try await autogen.register("python")
            try await autogen.subscribe(id: "p", topicType: "weather", agentType: "python")
            try publisher.publish(topicType: "weather", source: "x")
            _ = try await publisher.waitFor("the fourth acknowledged") { $0.acknowledged == 4 }
            #expect(autogen.log.value.acknowledgements == 0, "an AutoGen worker never sees an acknowledgement")
        }
    }

    @Test("a confirmation beyond what was sent confirms nothing")
    func confirmationBeyondSent() async throws {
        try await withHost { harness in
            let publisher = try await harness.worker("publisher", acknowledged: true)
            let runtime = try await harness.worker("runtime", acknowledged: true)
            try await runtime.register("listener")
            try await runtime.subscribe(id: "s", topicType: "news", agentType: "listener")
            try runtime.confirm(1_000)
            try publisher.publish(topicType: "news", source: "k")
            _ = try await runtime.waitFor("the event") { $0.events.count == 1 }
            #expect(publisher.log.value.acknowledged == 0)
            try runtime.confirm(1)
            _ = try await publisher.waitFor("acknowledged") { $0.acknowledged == 1 }
        }
    }

    @Test("what a runtime had not confirmed when its stream broke is sent to its next stream first")
    func unconfirmedSentAgain() async throws {
        try await withHost(lateWindow: .seconds(5)) { harness in
            let publisher = try await harness.worker("publisher", acknowledged: true)
            let first = try await harness.worker("runtime", clientID: "runtime-1", acknowledged: true)
            try await first.register("listener")
            try await first.subscribe(id: "s", topicType: "news", agentType: "listener")
            var sent = [try publisher.publish(topicType: "news", source: "k0")]
            _ = try await first.waitFor("the first event") { $0.events.count == 1 }
            try first.confirm(1)
            _ = try await publisher.waitFor("one acknowledged") { $0.acknowledged == 1 }
            for index in 1..<3 { sent.append(try publisher.publish(topicType: "news", source: "k\(index)")) }
            _ = try await first.waitFor("three events") { $0.events.count == 3 }
            await first.disconnect()

            let second = try await harness.worker("runtime again", clientID: "runtime-1", acknowledged: true)
            let log = try await second.waitFor("the two unconfirmed events") { $0.events.count == 2 }
            #expect(byteDifference(log.events.map(\.bytes), Array(sent[1...])) == nil)
            try second.confirm(2)
            _ = try await publisher.waitFor("all acknowledged") { $0.acknowledged == 3 }
        }
    }

    @Test("events no subscription matched reach a subscription that arrives within the window, in order, once")
    func lateSubscriber() async throws {
        try await withHost(lateWindow: .seconds(30)) { harness in
            let publisher = try await harness.worker("publisher", acknowledged: true)
            var sent: [[UInt8]] = []
            for index in 0..<5 { sent.append(try publisher.publish(topicType: "late", source: "k\(index)")) }
            // Kept by the host: acknowledged although nobody received them yet.
            _ = try await publisher.waitFor("acknowledged") { $0.acknowledged == 5 }

            let subscriber = try await harness.worker("subscriber")
            try await subscriber.register("listener")
            try await subscriber.subscribe(id: "a", topicType: "late", agentType: "listener")
            sent.append(try publisher.publish(topicType: "late", source: "live"))
            let log = try await subscriber.waitFor("six events") { $0.events.count == 6 }
            #expect(byteDifference(log.events.map(\.bytes), sent) == nil)
            // A second matching subscription of the same worker brings nothing twice.
            try await subscriber.subscribe(id: "b", topicTypePrefix: "la", agentType: "listener")
            let after = try await subscriber.catchUp(with: publisher, agentType: "listener")
            #expect(after.events.count == 6)

            // Another worker subscribing later gets the kept events too (they are kept for
            // the window, whoever received them since).
            let other = try await harness.worker("other")
            try await other.register("listener2")
            try await other.subscribe(id: "c", topicType: "late", agentType: "listener2")
            let otherLog = try await other.waitFor("the five kept events") { $0.events.count >= 5 }
            #expect(byteDifference(Array(otherLog.events.map(\.bytes).prefix(5)), Array(sent.prefix(5))) == nil)
        }
    }

    @Test("kept events expire after the window; the window is bounded in bytes, the oldest going first")
    func windowBounds() async throws {
        try await withHost(lateWindow: .seconds(1)) { harness in
            let publisher = try await harness.worker("publisher")
            try publisher.publish(topicType: "gone", source: "k")
            // Counted, not sampled: under load the one-second window can open and close between
            // two looks at what is kept now.
            let late = try #require(harness.host.late)
            #expect(await poll(timeout: .seconds(10)) { late.kept.load(ordering: .relaxed) == 1 }, "the event is kept")
            #expect(await poll(timeout: .seconds(10)) { late.expired.load(ordering: .relaxed) == 1 }, "the kept event expires")
            #expect(harness.host.lateUsage.events == 0)
            let subscriber = try await harness.worker("subscriber")
            try await subscriber.register("listener")
            try await subscriber.subscribe(id: "a", topicType: "gone", agentType: "listener")
            let log = try await subscriber.catchUp(with: publisher, agentType: "listener")
            #expect(log.events.isEmpty, "\(log.summary)")
        }
        try await withHost(lateWindow: .seconds(30), lateWindowBytes: 1_000) { harness in
            let publisher = try await harness.worker("publisher")
            var sent: [[UInt8]] = []
            for index in 0..<10 {
                sent.append(try publisher.publish(topicType: "big", source: "k\(index)", json: String(repeating: "x", count: 200)))
            }
            let subscriber = try await harness.worker("subscriber")
            try await subscriber.register("listener")
            try await subscriber.subscribe(id: "a", topicType: "big", agentType: "listener")
            let log = try await subscriber.catchUp(with: publisher, agentType: "listener")
            let kept = log.events.map(\.bytes)
            #expect(!kept.isEmpty && kept.count < 10)
            #expect(kept.reduce(0) { $0 + $1.count } <= 1_000)
            #expect(byteDifference(kept, Array(sent.suffix(kept.count))) == nil, "the newest are kept")
        }
    }

    @Test("in the start window, events that reached a subscriber are kept only up to 1/64 of the bound")
    func startWindowBound() async throws {
        try await withHost(lateWindow: .seconds(30), lateWindowBytes: 64 * 1024) { harness in
            let publisher = try await harness.worker("publisher")
            let subscriber = try await harness.worker("subscriber")
            try await subscriber.register("listener")
            try await subscriber.subscribe(id: "a", topicType: "busy", agentType: "listener")
            for index in 0..<20 {
                try publisher.publish(topicType: "busy", source: "k\(index)", json: String(repeating: "x", count: 300))
            }
            _ = try await subscriber.waitFor("twenty events") { $0.events.count == 20 }
            let usage = harness.host.lateUsage
            #expect(usage.events > 0 && usage.bytes <= 1024, "\(usage)")
            // An event nobody subscribes to is kept under the whole bound.
            try publisher.publish(topicType: "nobody", source: "k", json: String(repeating: "y", count: 2000))
            #expect(await poll { harness.host.lateUsage.bytes > 2000 }, "\(harness.host.lateUsage)")
        }
    }

    @Test("acknowledgements, kept events and late deliveries are counted in the host's metrics")
    func metrics() async throws {
        try await withHost(metricsListen: "127.0.0.1:0", lateWindow: .seconds(30)) { harness in
            let publisher = try await harness.worker("publisher", acknowledged: true)
            for index in 0..<3 { try publisher.publish(topicType: "later", source: "k\(index)") }
            _ = try await publisher.waitFor("acknowledged") { $0.acknowledged == 3 }
            let subscriber = try await harness.worker("subscriber")
            try await subscriber.register("listener")
            try await subscriber.subscribe(id: "a", topicType: "later", agentType: "listener")
            _ = try await subscriber.waitFor("the kept events") { $0.events.count == 3 }
            let metrics = try scrape(harness.host)
            #expect(metrics.value("agentd_host_publishes_acknowledged_total", [:]) == 3)
            #expect(metrics.value("agentd_host_events_kept_for_late_subscribers_total", [:]) == 3)
            #expect(metrics.value("agentd_host_events_delivered_late_total", [:]) == 3)
            #expect(metrics.value("agentd_host_events_expired_total", [:]) == 0)
            #expect((metrics.value("agentd_host_late_window_bytes", [:]) ?? 0) > 0)
        }
    }
}
