import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// `agentd run` as its users run it — the real binary, real plugins, real sockets — with a plugin
/// whose handler crashes the process next to healthy ones.
@Suite("agentd run: a crashing plugin costs only the runtime process", .serialized)
struct CrashIsolationTests {
    static let echo = ("echo.so", "libEchoAgent.so")
    static let counter = ("counter.so", "libCounterAgent.so")
    static let crasher = ("handler-crash.so", "libHandlerCrashPlugin.so")

    private func echo(_ client: WorkerClient, _ text: String) async throws -> String {
        let response = try await client.send(Array("{\"text\": \"\(text)\"}".utf8), messageType: "Echo", to: AgentID(type: "echo", key: "k"), timeout: .seconds(5))
        return String(decoding: response.payload, as: UTF8.self)
    }

    /// The error text of an RPC that failed (nil if it was answered).
    private func failure(_ client: WorkerClient, _ messageType: String, to target: AgentID) async -> String? {
        do {
            _ = try await client.send(Array("{}".utf8), messageType: messageType, to: target, timeout: .seconds(10))
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test("a handler's SIGSEGV: that RPC is answered naming plugin and signal, the healthy agents answer again, state resumes, other workers stay connected")
    func crashIsIsolated() async throws {
        let run = try await AgentdRunProcess(
            plugins: [Self.echo, Self.counter, Self.crasher],
            extraConfig: "[state]\nstore = sqlite\npath = state.db\n")
        defer { run.removeFolder() }
        let caller = try WorkerClient(address: run.address)
        let bystander = try WorkerClient(address: run.address)
        let counterKey = AgentID(type: "counter", key: "k1")
        let added = try await caller.send(Array("{\"amount\": 5}".utf8), messageType: "Add", to: counterKey)
        #expect(String(decoding: added.payload, as: UTF8.self).contains("\"count\": 5"))
        let before = run.childPIDs
        #expect(before.count == 1)
        // The runtime process joins the supervisor's embedded host, and its log says so.
        #expect(run.stderr.contains("host.embedded=true"), "\(run.stderr)")
        #expect(!run.stderr.contains("host.embedded=false"), "\(run.stderr)")

        // Load from the bystander while the crash happens: echo RPCs back to back.
        let load = Task {
            var answered = 0
            while !Task.isCancelled {
                if (try? await echo(bystander, "load")) != nil { answered += 1 }
            }
            return answered
        }
        let crash = await failure(caller, "Crash", to: AgentID(type: "segfault", key: "x"))
        let text = try #require(crash, "the crashing RPC must be answered with an error")
        #expect(text.contains("handler-crash"), "\(text)")
        #expect(text.contains("segfault"), "\(text)")
        #expect(text.contains("SIGSEGV"), "\(text)")
        #expect(text.contains("not redelivered"), "\(text)")

        // A new runtime process serves the healthy agents again, with the counter's state.
        let served = await poll(timeout: .seconds(20)) { (try? await echo(caller, "after")) != nil }
        #expect(served)
        let after = run.childPIDs
        #expect(after.count == 1 && after != before, "a new runtime process: before \(before), after \(after)")
        let count = try await caller.send(Array("{}".utf8), messageType: "Get", to: counterKey)
        #expect(String(decoding: count.payload, as: UTF8.self).contains("\"count\": 5"))
        // The bystander's connection to the host never broke: its calls are answered again on it.
        let bystanderServed = await poll(timeout: .seconds(10)) { (try? await echo(bystander, "still here")) != nil }
        #expect(bystanderServed)
        load.cancel()
        #expect(await load.value > 0)
        #expect(run.isRunning)
        #expect(run.stderr.contains("plugin handler-crash (agent type segfault) crashed with SIGSEGV while handling RPC 'Crash' to segfault/x"), "\(run.stderr)")
        await caller.close()
        await bystander.close()
        #expect(await run.stop())
        #expect(run.exitStatus == 0)
    }

    @Test("a plugin crashing in a thread of its own, outside its handlers, is known by the crashing instruction: three such crashes disable it")
    func crashesOutsideHandlersCount() async throws {
        let run = try await AgentdRunProcess(plugins: [Self.echo, Self.crasher])
        defer { run.removeFolder() }
        let client = try WorkerClient(address: run.address)
        let target = AgentID(type: "segfault", key: "x")
        let line = "plugin handler-crash crashed with SIGSEGV in its own code outside its handlers"
        for round in 1...3 {
            let serving = await poll(timeout: .seconds(20)) { await failure(client, "Ping", to: target) == nil }
            #expect(serving, "round \(round): Ping not answered")
            // Answered before its thread crashes (100 ms later).
            #expect(await failure(client, "CrashLater", to: target) == nil, "round \(round)")
            let counted = await poll(timeout: .seconds(20)) { run.stderr.components(separatedBy: line).count - 1 == round }
            #expect(counted, "round \(round): \(run.stderr)")
        }
        #expect(!run.stderr.contains("the runtime died outside any plugin handler"), "\(run.stderr)")
        var disabled: String?
        let refused = await poll(timeout: .seconds(20)) {
            disabled = await failure(client, "Ping", to: target)
            return disabled?.contains("is disabled") == true
        }
        #expect(refused, "\(disabled ?? "Ping answered")")
        #expect(disabled?.contains("outside its handlers") == true, "\(disabled ?? "")")
        #expect(try await echo(client, "fine") == "{\"text\": \"fine\"}")
        await client.close()
        #expect(await run.stop())
    }

    @Test("three crashes within a minute disable the plugin: its types answer an error saying so, until a new version is dropped in")
    func repeatedCrashesDisable() async throws {
        let run = try await AgentdRunProcess(plugins: [Self.echo, Self.crasher])
        defer { run.removeFolder() }
        let client = try WorkerClient(address: run.address)
        let target = AgentID(type: "segfault", key: "x")
        for round in 1...3 {
            // Served again before each crash (after a restart, the new runtime has registered).
            let serving = await poll(timeout: .seconds(20)) { await failure(client, "Ping", to: target) == nil }
            #expect(serving, "round \(round): Ping not answered")
            let crash = await failure(client, round == 2 ? "Abort" : "Crash", to: target)
            #expect(crash?.contains(round == 2 ? "SIGABRT" : "SIGSEGV") == true, "round \(round): \(crash ?? "answered")")
        }
        // The fourth runtime registers the type but calls none of its handlers.
        var disabled: String?
        let refused = await poll(timeout: .seconds(20)) {
            disabled = await failure(client, "Ping", to: target)
            return disabled?.contains("is disabled") == true
        }
        #expect(refused, "\(disabled ?? "Ping answered")")
        #expect(disabled?.contains("handler-crash") == true && disabled?.contains("crashed 3 times") == true, "\(disabled ?? "")")
        #expect(disabled?.contains("new version") == true, "\(disabled ?? "")")
        let crashAgain = await failure(client, "Crash", to: target)
        #expect(crashAgain?.contains("is disabled") == true, "\(crashAgain ?? "answered")")
        #expect(try await echo(client, "fine") == "{\"text\": \"fine\"}")
        #expect(run.stderr.contains("plugin handler-crash disabled"))

        // A new version (another content hash), dropped in with an atomic rename.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: "\(AgentdRunProcess.buildDirectory)/libHandlerCrashPlugin.so"))
        bytes.append(contentsOf: Array("new version".utf8))
        let temporary = "\(run.pluginDirectory)/.handler-crash.so.new"
        try bytes.write(to: URL(fileURLWithPath: temporary))
        #expect(rename(temporary, "\(run.pluginDirectory)/handler-crash.so") == 0)
        let enabled = await poll(timeout: .seconds(20)) { await failure(client, "Ping", to: target) == nil }
        #expect(enabled)
        await client.close()
        #expect(await run.stop())
    }

    @Test("SIGTERM ends agentd run within its grace period plus the margin while a handler is stuck")
    func sigtermWithStuckHandler() async throws {
        let run = try await AgentdRunProcess(plugins: [("test-agents.so", "libTestAgentsPlugin.so")])
        defer { run.removeFolder() }
        let client = try WorkerClient(address: run.address)
        let blocker = AgentID(type: "blocker", key: "b")
        let stuck = client.start(Array("{\"ms\": 120000}".utf8), messageType: "Block", to: blocker, timeout: .seconds(150))
        let blocking = await poll(timeout: .seconds(10)) {
            guard let answer = try? await client.send(Array("{}".utf8), messageType: "Blocked", to: AgentID(type: "blocker", key: "probe")) else { return false }
            return String(decoding: answer.payload, as: UTF8.self).contains("\"blocked\": 1")
        }
        #expect(blocking)
        let signalled = ContinuousClock.now
        run.signal(SIGTERM)
        // Grace 5 s + margin 5 s, and room for a loaded machine; a hang would take 120 s.
        let ended = await poll(timeout: .seconds(30), every: .milliseconds(20)) { !run.isRunning }
        let took = ContinuousClock.now - signalled
        #expect(ended, "agentd run still runs \(took) after SIGTERM")
        #expect(run.exitStatus == 0)
        stuck.cancel()
        await client.close()
        if !ended { await run.stop(timeout: .seconds(1)) }
    }

    @Test("with an external host: that host answers its own disconnect error, the supervisor logs the crash and restarts the runtime")
    func externalHost() async throws {
        let host = Process()
        host.executableURL = URL(fileURLWithPath: "\(AgentdRunProcess.buildDirectory)/agentd")
        host.arguments = ["host", "--listen", "127.0.0.1:0"]
        let output = Pipe()
        host.standardOutput = output
        host.standardError = FileHandle.nullDevice
        try host.run()
        defer {
            host.terminate()
            host.waitUntilExit()
        }
        // The first line: "listening on HOST:PORT".
        var line: [UInt8] = []
        while let byte = try output.fileHandleForReading.read(upToCount: 1)?.first, byte != UInt8(ascii: "\n") { line.append(byte) }
        let address = String(decoding: line, as: UTF8.self).replacingOccurrences(of: "listening on ", with: "")
        let run = try await AgentdRunProcess(plugins: [Self.echo, Self.crasher], host: address)
        defer { run.removeFolder() }
        #expect(!run.stdoutLines.contains { $0.hasPrefix("listening on") })
        let client = try WorkerClient(address: address)
        let crash = await failure(client, "Crash", to: AgentID(type: "segfault", key: "x"))
        #expect(crash?.contains("disconnected before answering") == true, "\(crash ?? "answered")")
        let served = await poll(timeout: .seconds(20)) { (try? await echo(client, "after")) != nil }
        #expect(served)
        #expect(run.stderr.contains("plugin handler-crash (agent type segfault) crashed with SIGSEGV while handling RPC 'Crash' to segfault/x"))
        await client.close()
        #expect(await run.stop())
        #expect(run.exitStatus == 0)
    }

    @Test("[runtime] metrics_listen: one scrape shows the embedded host's and the runtime's metrics, on the same port across a restart")
    func metricsAcrossRestart() async throws {
        let run = try await AgentdRunProcess(
            plugins: [Self.echo, Self.crasher], extraConfig: "[runtime]\nmetrics_listen = 127.0.0.1:0\n")
        defer { run.removeFolder() }
        let line = try #require(run.stdoutLines.first { $0.hasPrefix("metrics on http://") })
        let address = String(line.dropFirst("metrics on http://".count).dropLast("/metrics".count))
        let client = try WorkerClient(address: run.address)
        _ = try await echo(client, "one")
        func scrape() throws -> PrometheusExposition {
            let reply = try HTTPExchange.get("/metrics", from: address)
            #expect(reply.status == 200)
            return try PrometheusExposition(parsing: reply.text)
        }
        let first = try scrape()
        #expect(first.value("agentd_host_workers_connected") == 2)
        #expect(first.value("agentd_runtime_messages_received_total", ["kind": "request"]) == 1)
        #expect(first.samples("agentd_process_resident_memory_bytes").count == 1)
        _ = await failure(client, "Crash", to: AgentID(type: "segfault", key: "x"))
        #expect(await poll(timeout: .seconds(20)) { (try? await echo(client, "two")) != nil })
        // The new runtime's counters, through the same port.
        let restarted = await poll(timeout: .seconds(10)) {
            (try? scrape())?.value("agentd_runtime_messages_received_total", ["kind": "request"]) == 1
        }
        #expect(restarted)
        await client.close()
        #expect(await run.stop())
    }

    @Test("an event whose handler crashed is not handed to the next runtime, though the host sends it again (its late-subscriber window)")
    func crashingEventIsNotRedelivered() async throws {
        // The host keeps every event of its first 30 s for late subscribers: the next runtime's
        // registration receives the crashing event again.
        let run = try await AgentdRunProcess(plugins: [Self.echo, Self.crasher], hostConfig: "late_window_seconds = 30")
        defer { run.removeFolder() }
        let client = try WorkerClient(address: run.address)
        try client.publish(Array("{}".utf8), messageType: "Crash", to: TopicID(type: "crash-events", source: "e1"))
        let dropped = await poll(timeout: .seconds(20)) {
            run.stderr.contains("event dropped: its handler crashed an earlier runtime process")
        }
        #expect(dropped, "\(run.stderr)")
        #expect(await poll(timeout: .seconds(20)) { await failure(client, "Ping", to: AgentID(type: "segfault", key: "e1")) == nil })
        let crashes = run.stderr.components(separatedBy: "crashed with SIGSEGV while handling event 'Crash' to segfault/e1").count - 1
        #expect(crashes == 1, "\(run.stderr)")
        await client.close()
        #expect(await run.stop())
    }
}
