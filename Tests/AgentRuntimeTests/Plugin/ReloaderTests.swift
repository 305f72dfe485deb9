import AgentCore
import AgentRuntime
import Foundation
import Testing

/// The reloader's diff of the plugin directory and its registrations with the host, through
/// `rescan()` (what SIGHUP does).
@Suite("Reloader")
struct ReloaderTests {
    static func bytes(of product: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: "\(RuntimeHarness.buildDirectory)/lib\(product).so")))
    }

    @Test("a refused file is refused once, and tried again only when its content changes")
    func refusedOnceUntilChanged() async throws {
        try await withRuntime(plugins: [("echo.so", "EchoAgent")]) { harness in
            let path = "\(harness.pluginDirectory)/late.so"
            try Data(try Self.bytes(of: "NoEntryPlugin")).write(to: URL(fileURLWithPath: path), options: .atomic)
            await harness.runtime.rescan()
            await harness.runtime.rescan()
            await harness.runtime.rescan()
            let refusals = harness.log.records { $0.message == "plugin refused" && $0.metadata["plugin.path"] == path }
            #expect(refusals.count == 1, "one line for one content, however many rescans")
            try Data(try Self.bytes(of: "TestAgentsPlugin")).write(to: URL(fileURLWithPath: path), options: .atomic)
            await harness.runtime.rescan()
            #expect(harness.runtime.plugins.map(\.name).sorted() == ["echo-plugin", "test-agents"])
            let count = try await harness.call("counter/x", "Get", "{}")
            #expect(count.contains("\"count\""))
        }
    }

    @Test("an agent type the host refuses (another client holds it) leaves the plugin's other types serving")
    func hostRefusesOneType() async throws {
        try await withRuntime(plugins: [("echo.so", "EchoAgent")]) { harness in
            // Another worker holds `counter` first: AutoGen's one-owner-per-type rule.
            let holder = HostConnection(
                address: harness.runtime.hostAddress!, clientID: "holder", maxMessageBytes: 1 << 20,
                logger: harness.log.logger())
            try holder.open(.init(onMessage: { _ in }))
            try await holder.register(agentType: "counter")
            try Data(try Self.bytes(of: "TestAgentsPlugin")).write(
                to: URL(fileURLWithPath: "\(harness.pluginDirectory)/test-agents.so"), options: .atomic)
            await harness.runtime.rescan()
            let refused = harness.log.records { $0.message == "agent type refused by the host" }
            #expect(refused.map { $0.metadata["agent.type"] } == ["counter"])
            // The plugin's other types serve.
            let published = try await harness.call("publisher/p", "Publish", #"{"topic": "notes", "source": "r", "text": "x"}"#)
            #expect(published.contains("true"))
            await holder.close()
        }
    }
}
