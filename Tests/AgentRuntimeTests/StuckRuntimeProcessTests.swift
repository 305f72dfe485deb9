import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// `agentd run` with handlers that never return, as a process: it ends itself with status 75
/// once it cannot serve (for its supervisor to restart it), and SIGTERM ends it within the
/// grace period plus the margin, stuck handlers or not.
@Suite("agentd run with handlers that never return")
struct StuckRuntimeProcessTests {
    @Test("every handler thread stuck past handler_timeout: one line names them, and the runtime process exits with status 75")
    func exitsWith75() async throws {
        try await AgentdRun.with(
            plugins: [("looping.so", "LoopingPlugin")], ini: "[runtime]\nworkers = 1\nmax_workers = 2\nhandler_timeout = 1\n",
            inProcess: true
        ) { run in
        let client = try WorkerClient(address: run.address)
        #expect(try await client.send(Array("{}".utf8), messageType: "Echo", to: AgentID(type: "echoer", key: "a")).payload == Array("{}".utf8))
        let loops = (0..<2).map { key in
            client.start(Array("{}".utf8), messageType: "Loop", to: AgentID(type: "looper", key: "k\(key)"), timeout: .seconds(30))
        }
        let status = await run.exitStatus(within: .seconds(30))
        #expect(status == AgentRuntime.stuckExitStatus, "\(run.stderr)")
        let line = run.stderr.split(separator: "\n").first { $0.contains("the runtime cannot serve any more") }
        #expect(line?.contains("plugin looping 1.0.0, agent type looper, message type 'Loop' (2 stuck") == true, "\(run.stderr)")
        #expect(line?.contains("ending the process with status 75") == true, "\(run.stderr)")
        for loop in loops { _ = try? await loop.value }
        await client.close()
        }
    }

    @Test("a runtime whose handler threads are all stuck is restarted by agentd run's supervisor and serves again")
    func supervisorRestartsStuckRuntime() async throws {
        try await AgentdRun.with(
            plugins: [("looping.so", "LoopingPlugin")], ini: "[runtime]\nworkers = 1\nmax_workers = 2\nhandler_timeout = 1\n"
        ) { run in
        let client = try WorkerClient(address: run.address)
        let loops = (0..<2).map { key in
            client.start(Array("{}".utf8), messageType: "Loop", to: AgentID(type: "looper", key: "k\(key)"), timeout: .seconds(30))
        }
        let restarted = await poll(timeout: .seconds(30)) { run.stderr.contains("runtime restarted and ready") }
        #expect(restarted, "\(run.stderr)")
        #expect(run.stderr.contains("the runtime asked to be restarted (exit status 75)"), "\(run.stderr)")
        for loop in loops { _ = try? await loop.value }
        // The new runtime serves (the host and this client's connection lived through it).
        var answered = false
        _ = await poll(timeout: .seconds(10)) {
            answered = (try? await client.send(Array("{}".utf8), messageType: "Echo", to: AgentID(type: "echoer", key: "a")))?.payload == Array("{}".utf8)
            return answered
        }
        #expect(answered, "\(run.stderr)")
        await client.close()
        }
    }

    @Test("SIGTERM ends the process within the grace period plus the margin while a handler never returns")
    func sigtermWithStuckHandler() async throws {
        try await AgentdRun.with(plugins: [("looping.so", "LoopingPlugin")], ini: "[runtime]\nworkers = 2\n") { run in
        let client = try WorkerClient(address: run.address)
        let loop = client.start(Array("{}".utf8), messageType: "Loop", to: AgentID(type: "looper", key: "k"), timeout: .seconds(30))
        // The handler is running once another agent answers after it was sent (the same stream).
        #expect(try await client.send(Array("{}".utf8), messageType: "Echo", to: AgentID(type: "echoer", key: "a")).payload == Array("{}".utf8))
        let started = ContinuousClock.now
        run.signal(SIGTERM)
        let status = await run.exitStatus(within: .seconds(30))
        let took = ContinuousClock.now - started
        #expect(status == 0, "\(run.stderr)")
        // The grace period (5 s) + the margin (2 s) + closing; 20 s tells it from the hang.
        #expect(took < .seconds(20), "\(took)")
        #expect(run.stderr.contains("handlers still running at the end of shutdown"), "\(run.stderr)")
        let answer = await #expect(throws: RuntimeError.self) { _ = try await loop.value }
        #expect(answer?.message.contains("shutting down") == true, "\(String(describing: answer))")
        await client.close()
        }
    }
}
