import AgentCore
import AgentRuntime
import Foundation
import Testing

/// The dispatcher runs a handler on the thread that read its message; these check that a
/// handler that blocks that thread does not stop the runtime from serving everyone else.
@Suite("Inline dispatch")
struct InlineDispatchTests {
    static let plugins: [(file: String, product: String)] = [("echo.so", "EchoAgent"), ("test-agents.so", "TestAgentsPlugin")]

    /// Polls `blocker`'s count of handlers blocked now until it is `expected` (10 s at most).
    private func waitForBlocked(_ harness: RuntimeHarness, _ expected: Int) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await harness.call("blocker/probe", "Blocked", "{}") == "{\"blocked\": \(expected)}" { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    @Test("handlers blocking their threads do not stop the others: four agents blocked, others answered, then all released")
    func blockedHandlersDoNotStopTheRest() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            // The harness runs 4 handler threads (plus the one that is always free to read).
            let blocked = Task {
                try await withThrowingTaskGroup(of: String.self) { group in
                    for index in 0..<4 {
                        group.addTask { try await harness.call("blocker/b\(index)", "Block", "{}") }
                    }
                    return try await group.reduce(into: [String]()) { $0.append($1) }
                }
            }
            #expect(try await waitForBlocked(harness, 4), "the four Block handlers should be running at once")
            // Every handler thread is stuck, yet requests to other agents are read and answered.
            for index in 0..<50 {
                let answer = try await harness.call("echo/e\(index % 5)", "Echo", #"{"text": "while blocked \#(index)"}"#)
                #expect(answer == #"{"text": "while blocked \#(index)"}"#)
            }
            #expect(try await harness.call("blocker/probe", "Blocked", "{}") == #"{"blocked": 4}"#)
            #expect(try await harness.call("blocker/gate", "Open", "{}") == "{}")
            let released = try await blocked.value
            #expect(released == Array(repeating: #"{"opened": true}"#, count: 4))
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
            let deadline = ContinuousClock.now + .seconds(10)
            var counts: [String] = []
            while ContinuousClock.now < deadline {
                counts = []
                for key in 0..<4 { counts.append(try await harness.call("counter/k\(key)", "Get", "{}")) }
                if counts.allSatisfy({ $0.hasPrefix("{\"count\": 500,") }) { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(counts == (0..<4).map { "{\"count\": 500, \"key\": \"k\($0)\"}" })
        }
    }
}
