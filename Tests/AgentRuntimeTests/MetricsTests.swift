import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// A runtime's /metrics: its own counts and its embedded host's, in one scrape.
@Suite("Metrics: a runtime's /metrics counts its plugins, agents, handlers and checkpoints")
struct RuntimeMetricsTests {
    static let plugins = [(file: "test-agents.so", product: "TestAgentsPlugin")]

    private func scrape(_ runtime: AgentRuntime) throws -> PrometheusExposition {
        let reply = try HTTPExchange.get("/metrics", from: try #require(runtime.metricsAddress))
        #expect(reply.status == 200)
        return try PrometheusExposition(parsing: reply.text)
    }

    @Test("handler calls and failures by agent type, messages received, agents, checkpoints, plugins and the host")
    func counts() async throws {
        let folder = NSTemporaryDirectory() + "agentd-metrics-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let harness = try await RuntimeHarness.start(
            plugins: Self.plugins, stateStorePath: "\(folder)/agents.db", metricsListen: "127.0.0.1:0")
        do {
            // 6 events to two counters, then 3 RPCs reading them; 2 RPCs that fail, 1 that the
            // handler fails without a word.
            for index in 0..<6 {
                try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count", source: "k\(index % 2)"))
            }
            for key in ["k0", "k1"] {
                #expect(try await poll { try await harness.call("counter/\(key)", "Get", "{}").contains(#""count": 3"#) })
            }
            _ = try await harness.call("counter/k0", "Get", "{}")
            for _ in 0..<2 { await #expect(throws: RuntimeError.self) { try await harness.call("failing/x", "Boom", "{}") } }
            await #expect(throws: RuntimeError.self) { try await harness.call("silent-fail/x", "Anything", "{}") }

            let metrics = try scrape(harness.runtime)
            let statistics = harness.runtime.agentStatistics
            #expect(metrics.value("agentd_runtime_messages_received_total", ["kind": "event"]) == 6)
            let gets = try #require(metrics.value("agentd_runtime_handler_calls_total", ["agent_type": "counter"]))
            #expect(gets >= 6 + 3, "6 events and at least 3 Gets (the poll may have asked more often)")
            #expect(metrics.value("agentd_runtime_messages_received_total", ["kind": "request"]) == gets - 6 + 3)
            #expect(metrics.value("agentd_runtime_handler_failures_total", ["agent_type": "counter"]) == 0)
            #expect(metrics.value("agentd_runtime_handler_calls_total", ["agent_type": "failing"]) == 2)
            #expect(metrics.value("agentd_runtime_handler_failures_total", ["agent_type": "failing"]) == 2)
            #expect(metrics.value("agentd_runtime_handler_failures_total", ["agent_type": "silent-fail"]) == 1)
            #expect(metrics.value("agentd_runtime_agents_resident") == Double(statistics.resident))
            #expect(metrics.value("agentd_runtime_agents_resident") == 4)
            #expect(metrics.value("agentd_runtime_agent_activations_total") == Double(statistics.activations))
            #expect(metrics.value("agentd_runtime_agent_deactivations_total") == 0)
            let checkpoints = try #require(metrics.value("agentd_runtime_checkpoints_total"))
            #expect(checkpoints == Double(statistics.checkpoints) && checkpoints >= 2)
            #expect(metrics.value("agentd_runtime_checkpoint_duration_seconds_count") == checkpoints)
            #expect(metrics.value("agentd_runtime_state_commits_total") == Double(statistics.commits))
            #expect(metrics.value("agentd_runtime_checkpoint_failures_total") == 0)
            #expect(metrics.value("agentd_runtime_plugins_loaded") == 1)
            #expect(metrics.value("agentd_runtime_plugin_loads_total") == 1)
            #expect(metrics.value("agentd_runtime_plugin_refusals_total") == 0)
            #expect(metrics.value("agentd_runtime_host_connected") == 1)
            #expect(metrics.value("agentd_runtime_reconnects_total") == 0)
            #expect((metrics.value("agentd_process_resident_memory_bytes") ?? 0) > 1_000_000)
            // The embedded host's metrics in the same scrape: the runtime and the test's client.
            #expect(metrics.value("agentd_host_workers_connected") == 2)
            #expect(metrics.value("agentd_host_messages_received_total", ["kind": "event"]) == 6)
            // Labels: kinds, reasons, agent types; never a key or a message id.
            let labels = Set(metrics.families.values.flatMap { $0.samples.flatMap(\.labels.keys) })
            #expect(labels.isSubset(of: ["kind", "reason", "le", "agent_type"]))
            let types = Set(metrics.samples("agentd_runtime_handler_calls_total").compactMap { $0.labels["agent_type"] })
            #expect(types == ["counter", "failing", "silent-fail"])

            // A file that is not a plugin is refused; a plugin removed is counted.
            let mark = harness.log.count
            try dropIn(bytes: Array("not an ELF file".utf8), as: "broken.so", in: harness.pluginDirectory)
            await harness.runtime.rescan()
            #expect(await harness.log.wait(since: mark) { $0.message == "plugin refused" } != nil)
            try FileManager.default.removeItem(atPath: "\(harness.pluginDirectory)/test-agents.so")
            await harness.runtime.rescan()
            let after = try scrape(harness.runtime)
            #expect(after.value("agentd_runtime_plugin_refusals_total") == 1)
            #expect(after.value("agentd_runtime_plugin_removals_total") == 1)
            #expect(after.value("agentd_runtime_plugins_loaded") == 0)
        } catch {
            await harness.stop()
            throw error
        }
        let address = try #require(harness.runtime.metricsAddress)
        await harness.stop()
        #expect(throws: (any Error).self) { try HTTPExchange.get("/metrics", from: address) }
    }

    @Test("two runtimes in one process keep their own counts")
    func separateRegistries() async throws {
        let one = try await RuntimeHarness.start(plugins: Self.plugins, metricsListen: "127.0.0.1:0")
        let two = try await RuntimeHarness.start(plugins: Self.plugins, metricsListen: "127.0.0.1:0")
        do {
            for _ in 0..<3 { _ = try await one.call("counter/a", "Get", "{}") }
            _ = try await two.call("counter/a", "Get", "{}")
            #expect(try scrape(one.runtime).value("agentd_runtime_handler_calls_total", ["agent_type": "counter"]) == 3)
            #expect(try scrape(two.runtime).value("agentd_runtime_handler_calls_total", ["agent_type": "counter"]) == 1)
        } catch {
            await one.stop()
            await two.stop()
            throw error
        }
        await one.stop()
        await two.stop()
    }

    @Test("a metrics address already taken stops the start with an error naming it")
    func addressTaken() async throws {
        let one = try await RuntimeHarness.start(plugins: Self.plugins, metricsListen: "127.0.0.1:0")
        let taken = try #require(one.runtime.metricsAddress)
        await #expect {
            _ = try await RuntimeHarness.start(plugins: Self.plugins, metricsListen: taken)
        } throws: { error in
            "\(error)".contains(taken) && "\(error)".contains("metrics_listen")
        }
        await one.stop()
    }
}
