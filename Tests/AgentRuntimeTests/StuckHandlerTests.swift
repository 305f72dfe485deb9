import AgentCore
@testable import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// Handlers that never return (the looping plugin's `Loop` sleeps in a loop forever): the
/// runtime keeps serving, answers what it cannot, says which handler is stuck, and shuts down
/// without waiting for them or unloading their plugin. (Their threads stay stuck in this test
/// process, idle in nanosleep.)
@Suite("Handlers that never return")
struct StuckHandlerTests {
    @Test("healthy agents keep being served past stuck handlers; the stuck RPC is answered at handler_timeout and RPCs to its agent at once; shutdown does not wait for it")
    func runtimeServesPastStuckHandlers() async throws {
        let harness = try await RuntimeHarness.start(
            plugins: [("looping.so", "LoopingPlugin")], handlerTimeout: .seconds(1),
            shutdownGracePeriod: .milliseconds(500),
            configure: { $0.workers = 1; $0.maxWorkers = 6 })
        // More stuck handlers than the runtime has handler threads to begin with (1).
        let loops = (0..<3).map { key in
            harness.client.start(Array("{}".utf8), messageType: "Loop", to: AgentID(type: "looper", key: "k\(key)"))
        }
        // Queued behind a stuck handler at first: served once another thread takes its place.
        for key in 0..<5 {
            let answer = try await harness.call("echoer/e\(key)", "Echo", #"{"n": \#(key)}"#)
            #expect(answer == #"{"n": \#(key)}"#)
        }
        for loop in loops {
            let error = await #expect(throws: RuntimeError.self) { _ = try await loop.value }
            #expect(error?.message.contains("'Loop' of agent looper/k") == true, "\(String(describing: error))")
            #expect(error?.message.contains("plugin looping 1.0.0") == true, "\(String(describing: error))")
            #expect(error?.message.contains("handler timeout (1 s)") == true, "\(String(describing: error))")
        }
        // The stuck agent refuses at once (not after the RPC's own deadline)...
        let refused = await #expect(throws: RuntimeError.self) {
            _ = try await harness.client.send(Array("{}".utf8), messageType: "Echo", to: AgentID(type: "looper", key: "k0"), timeout: .seconds(5))
        }
        #expect(refused?.message.contains("Agent looper/k0 is stuck") == true, "\(String(describing: refused))")
        // ...while another key of the same type answers.
        #expect(try await harness.call("looper/fresh", "Echo", "{}") == "{}")
        let logged = await harness.log.first { $0.message.contains("handler stuck past handler_timeout") }
        #expect(logged?.metadata["plugin"] == "looping" && logged?.metadata["message.type"] == "Loop")
        #expect(harness.runtime.plugins.count == 1)

        let started = ContinuousClock.now
        await harness.stop()
        // Grace (0.5 s) + margin (2 s) + closing; the bound tells "returned" from "hung".
        #expect(ContinuousClock.now - started < .seconds(15))
        let left = await harness.log.first { $0.message.contains("handlers still running at the end of shutdown") }
        #expect(left != nil)
    }

    @Test("a handler answered as stuck that returns later frees its agent: RPCs to it are served again")
    func stuckHandlerReturns() async throws {
        try await withRuntime(plugins: [("test-agents.so", "TestAgentsPlugin")], handlerTimeout: .milliseconds(300)) { harness in
            // Blocks its thread for 3 s (the gate stays closed), far past the handler timeout.
            let blocked = harness.client.start(Array(#"{"ms": 3000}"#.utf8), messageType: "Block", to: AgentID(type: "blocker", key: "b"))
            let error = await #expect(throws: RuntimeError.self) { _ = try await blocked.value }
            #expect(error?.message.contains("'Block' of agent blocker/b") == true, "\(String(describing: error))")
            let returned = await harness.log.first(timeout: .seconds(20)) { $0.message == "a handler answered as stuck has returned" }
            #expect(returned?.metadata["agent.id"] == "blocker/b")
            let answer = try await harness.call("blocker/b", "Blocked", "{}")
            #expect(answer.contains(#""blocked": 0"#), "\(answer)")
        }
    }

    @Test("when every handler thread up to max_workers is stuck past handler_timeout, one line names the plugin, agent type and message type, and the StuckAction is taken")
    func unservableRuntimeReports() async throws {
        let reports = AsyncCondition<[AgentRuntime.StuckHandler]?>(nil)
        let harness = try await RuntimeHarness.start(
            plugins: [("looping.so", "LoopingPlugin")], handlerTimeout: .milliseconds(500),
            shutdownGracePeriod: .milliseconds(200),
            configure: { configuration in
                configuration.workers = 1
                configuration.maxWorkers = 2
                configuration.stuckAction = .call { stuck in reports.mutate { $0 = stuck } }
            })
        let loops = (0..<2).map { key in
            harness.client.start(Array("{}".utf8), messageType: "Loop", to: AgentID(type: "looper", key: "k\(key)"))
        }
        let stuck = try #require(await reports.wait(timeout: .seconds(20)) { $0 != nil } ?? nil)
        #expect(stuck.count == 2)
        for handler in stuck {
            #expect(handler.plugin == "looping 1.0.0" && handler.agentType == "looper" && handler.messageType == "Loop")
            #expect(handler.running >= .milliseconds(500))
        }
        let line = try #require(await harness.log.first { $0.message.contains("the runtime cannot serve any more") })
        #expect(line.level == .critical)
        #expect(line.message.contains("plugin looping 1.0.0, agent type looper, message type 'Loop' (2 stuck"), "\(line.message)")
        for loop in loops { _ = try? await loop.value }
        let started = ContinuousClock.now
        await harness.stop()
        #expect(ContinuousClock.now - started < .seconds(15))
    }
}
