import AgentCore
import AgentRuntime
import Foundation
import Testing

/// Two runtimes in one process (each with its embedded host and its own copy of a plugin) keep
/// to themselves: what a plugin of one sends goes through its own runtime, and ABI 1.0's
/// `publish(NULL, …)`, which names no runtime, is refused instead of going to whichever runtime
/// started first.
@Suite("Two runtimes in one process")
struct TwoRuntimesTests {
    static let plugins = [(file: "test-agents.so", product: "TestAgentsPlugin")]

    /// The first event on `topicType` each runtime's client sees after `body` ran.
    private func firstNote(_ harness: RuntimeHarness, _ events: AsyncStream<WorkerClient.Event>) async -> WorkerClient.Event? {
        var iterator = events.makeAsyncIterator()
        return await iterator.next()
    }

    @Test("plugin_publish reaches the plugin's own runtime's host, never the other one")
    func pluginPublishStaysHome() async throws {
        try await withRuntime(plugins: Self.plugins) { a in
            try await withRuntime(plugins: Self.plugins) { b in
                let eventsA = a.client.events()
                let eventsB = b.client.events()
                try await a.client.subscribe(topicType: "notes")
                try await b.client.subscribe(topicType: "notes")
                // B's plugin publishes as itself: only B's host (and so B's client) sees it.
                _ = try await b.call("publisher/p", "PublishAsPlugin", #"{"topic": "notes", "source": "b", "text": "from B"}"#)
                _ = try await a.call("publisher/p", "PublishAsPlugin", #"{"topic": "notes", "source": "a", "text": "from A"}"#)
                let atB = try #require(await firstNote(b, eventsB))
                #expect(atB.topic == TopicID(type: "notes", source: "b"))
                #expect(atB.sender == nil, "published by the plugin itself: no sending agent")
                #expect(String(decoding: atB.payload, as: UTF8.self).contains("from B"))
                // A's client's first note is A's own: B's never reached A's host.
                let atA = try #require(await firstNote(a, eventsA))
                #expect(atA.topic == TopicID(type: "notes", source: "a"))
                #expect(String(decoding: atA.payload, as: UTF8.self).contains("from A"))
            }
        }
    }

    @Test("publish(NULL, …) names no runtime: with two in the process it is refused with AGENTD_MISUSE")
    func nullSenderIsRefusedWhenAmbiguous() async throws {
        try await withRuntime(plugins: Self.plugins) { a in
            try await withRuntime(plugins: Self.plugins) { _ in
                let refused = await #expect(throws: RuntimeError.self) {
                    _ = try await a.call("publisher/p", "PublishAsNobody", #"{"topic": "notes", "source": "x", "text": "?"}"#)
                }
                #expect(refused?.message.contains("status 8") == true, "AGENTD_MISUSE: \(refused?.message ?? "")")
            }
        }
    }
}
