import AgentCore
import AgentRuntime
import Foundation
import Testing

@Suite("Graceful shutdown")
struct GracefulShutdownTests {
    @Test("shutdown lets handlers finish within the grace period and answers every other pending RPC")
    func shutdownAnswersEverything() async throws {
        let harness = try await RuntimeHarness.start(
            plugins: [("versioned.so", "VersionedPluginV1")], shutdownGracePeriod: .milliseconds(500))
        let client = harness.client
        // One that finishes within the grace period (30 ms), one that never would, and one
        // queued behind it.
        let slow = client.start(Array("{}".utf8), messageType: "Slow", to: AgentID(type: "versioned", key: "a"))
        let never = client.start(Array("{}".utf8), messageType: "Never", to: AgentID(type: "versioned", key: "b"))
        let behind = client.start(Array("{}".utf8), messageType: "Get", to: AgentID(type: "versioned", key: "b"))
        _ = try await harness.call("versioned/c", "Get", "{}")  // all three are in by now
        let started = ContinuousClock.now
        await harness.runtime.shutdown()
        // Without waiting for the handler that never finishes (its deadline is the harness's
        // 60 s): about the grace period; the bound leaves room for AddressSanitizer on a loaded
        // machine (4 s seen there).
        #expect(ContinuousClock.now - started < .seconds(10))
        let finished = String(decoding: try await slow.value.payload, as: UTF8.self)
        #expect(finished.contains(#""version": 1"#))
        for task in [never, behind] {
            let error = await #expect(throws: RuntimeError.self) { _ = try await task.value }
            #expect(error?.message.contains("shutting down") == true, "\(String(describing: error))")
        }
        await harness.client.close()
    }
}
