import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Synchronization
import Testing

/// The dispatcher runs a handler on the thread that read its message; these check that a
/// handler that blocks that thread does not stop the runtime from serving everyone else.
@Suite("Inline dispatch")
struct InlineDispatchTests {
    static let plugins: [(file: String, product: String)] = [("echo.so", "EchoAgent"), ("test-agents.so", "TestAgentsPlugin")]

    /// Waits (10 s at most) until `count` Block handlers have announced that they block (each
    /// publishes `Blocking` to topic blocker-started before it waits).
    private func waitForBlocking(_ events: AsyncStream<WorkerClient.Event>, _ count: Int) async -> Bool {
        await withDeadline(.seconds(10)) {
            var seen = 0
            for await event in events where event.messageType == "Blocking" {
                seen += 1
                if seen == count { return true }
            }
            return false
        } ?? false
    }

    @Test("handlers blocking their threads do not stop the others: three agents blocked, others answered, then all released")
    func blockedHandlersDoNotStopTheRest() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let events = harness.client.events()
            try await harness.client.subscribe(topicType: "blocker-started")
            // The harness runs 4 handler threads (plus the one that is always free to read).
            let blocked = Task {
                try await withThrowingTaskGroup(of: String.self) { group in
                    for index in 0..<3 {
                        group.addTask { try await harness.call("blocker/b\(index)", "Block", "{}") }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
            }
            #expect(await waitForBlocking(events, 3), "the three Block handlers should be running at once")
            // Three handler threads are stuck, yet requests to other agents are read and answered.
            for index in 0..<50 {
                let answer = try await harness.call("echo/e\(index % 5)", "Echo", #"{"text": "while blocked \#(index)"}"#)
                #expect(answer == #"{"text": "while blocked \#(index)"}"#)
            }
            #expect(try await harness.call("blocker/probe", "Blocked", "{}") == #"{"blocked": 3}"#)
            #expect(try await harness.call("blocker/gate", "Open", "{}") == "{}")
            let released = try await blocked.value
            #expect(released == Array(repeating: #"{"opened": true}"#, count: 3))
            #expect(try await harness.call("blocker/gate", "Close", "{}") == "{}")
        }
    }

    @Test("2,000 events interleaved with RPCs all reach their agents when the reading thread runs the handlers")
    func orderPerAgentUnderLoad() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            // 2,000 events to counter agents from one publisher, interleaved with RPCs.
            for round in 0..<20 {
                for index in 0..<100 {
                    try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count", source: "k\(index % 4)"))
                }
                _ = try await harness.call("echo/x", "Echo", #"{"text": "round \#(round)"}"#)
            }
            // The counts can only be read back, through RPCs.
            var counts: [String] = []
            _ = try await poll {
                counts = []
                for key in 0..<4 { counts.append(try await harness.call("counter/k\(key)", "Get", "{}")) }
                return counts.allSatisfy { $0.hasPrefix("{\"count\": 500,") }
            }
            #expect(counts == (0..<4).map { "{\"count\": 500, \"key\": \"k\($0)\"}" })
        }
    }

    @Test("with every handler thread blocked, the runtime still reads: the embedded host answers at once, the queued handler runs later")
    func readingNeverStops() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let events = harness.client.events()
            try await harness.client.subscribe(topicType: "blocker-started")
            // Five Blocks of 1.5 s for 4 handler threads: four block, the fifth waits in the run
            // queue, and the thread left keeps reading from the host.
            let finished = FinishedCount()
            let blocked = Task {
                try await withThrowingTaskGroup(of: String.self) { group in
                    for index in 0..<5 {
                        group.addTask {
                            defer { finished.value.add(1, ordering: .relaxed) }
                            return try await harness.call("blocker/c\(index)", "Block", #"{"ms": 60000}"#)
                        }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
            }
            #expect(await waitForBlocking(events, 4))
            // The embedded host still routes while every handler thread is taken: an RPC to a
            // type nobody serves is refused before any Block has finished.
            await #expect(throws: RuntimeError.self) {
                _ = try await harness.call("nobody-serves-this/x", "Echo", "{}")
            }
            #expect(finished.value.load(ordering: .relaxed) == 0)
            // All five are answered once the gate opens, the fifth once a thread is free.
            #expect(try await harness.call("blocker/gate", "Open", "{}") == "{}")
            let released = try await blocked.value
            #expect(released == Array(repeating: #"{"opened": true}"#, count: 5))
            #expect(try await harness.call("blocker/gate", "Close", "{}") == "{}")
        }
    }

    @Test("one event that blocks two agents at once (fan-out) does not stop the reading: an RPC meanwhile is answered while both still block")
    func fanOutOfBlockingHandlers() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            let events = harness.client.events()
            try await harness.client.subscribe(topicType: "blocker-started")
            // blocker/f and blocker-b/f both subscribe to block-fanout: one completion queues two
            // agents; both block until the gate opens (the leader runs one, a worker the other).
            try harness.client.publish(Array(#"{"ms": 60000}"#.utf8), messageType: "Block",
                                       to: TopicID(type: "block-fanout", source: "f"))
            #expect(await waitForBlocking(events, 2))
            let answer = try await harness.call("echo/during-fanout", "Echo", #"{"text": "still read"}"#)
            #expect(answer == #"{"text": "still read"}"#)
            // Answered while both still block (the count is the plugin's, of handlers waiting now).
            #expect(try await harness.call("blocker/probe3", "Blocked", "{}") == #"{"blocked": 2}"#)
            #expect(try await harness.call("blocker/gate", "Open", "{}") == "{}")
            #expect(try await poll { try await harness.call("blocker/probe3", "Blocked", "{}") == #"{"blocked": 0}"# })
            #expect(try await harness.call("blocker/gate", "Close", "{}") == "{}")
        }
    }
}

/// Calls finished so far (shared by the tasks of a test).
private final class FinishedCount: Sendable {
    let value = Atomic<Int>(0)
}
