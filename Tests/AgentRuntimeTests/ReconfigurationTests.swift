@testable import AgentRuntime
import Foundation
import Testing

/// What SIGHUP applies while the runtime serves (`AgentRuntime.reconfigure`): plugins read their
/// new `[plugin.NAME]` settings at once, and the limits that are safe to change live change.
@Suite("Reconfiguring a running runtime")
struct ReconfigurationTests {
    static let plugins: [(file: String, product: String)] = [("test-agents.so", "TestAgentsPlugin")]

    @Test("a plugin's setting() answers with the re-read [plugin.NAME] values; removed keys are gone")
    func pluginSettings() async throws {
        try await withRuntime(plugins: Self.plugins, settings: ["test-agents": ["colour": "teal", "size": "3"]]) { harness in
            let before = try await harness.call("settings/s", "Setting", #"{"key": "colour"}"#)
            #expect(before.contains("teal"))
            let changed = await harness.runtime.reconfigure(.init(
                mailboxLimit: 10_000, rpcTimeout: .seconds(60),
                pluginSettings: ["test-agents": ["colour": "ochre", "shape": "round"]]))
            #expect(changed == ["test-agents": ["colour", "shape", "size"]])
            let colour = try await harness.call("settings/s", "Setting", #"{"key": "colour"}"#)
            #expect(colour.contains("ochre"))
            let shape = try await harness.call("settings/s", "Setting", #"{"key": "shape"}"#)
            #expect(shape.contains("round"))
            let removed = await #expect(throws: RuntimeError.self) {
                _ = try await harness.call("settings/s", "Setting", #"{"key": "size"}"#)
            }
            #expect(removed?.message.contains("no setting 'size'") == true)
            // The same values again change nothing.
            let again = await harness.runtime.reconfigure(.init(
                mailboxLimit: 10_000, rpcTimeout: .seconds(60),
                pluginSettings: ["test-agents": ["colour": "ochre", "shape": "round"]]))
            #expect(again.isEmpty)
        }
    }

    @Test("mailbox_limit and rpc_timeout take their new values for what comes next")
    func limits() async throws {
        try await withRuntime(plugins: Self.plugins) { harness in
            await harness.runtime.reconfigure(.init(mailboxLimit: 7, rpcTimeout: .milliseconds(1500), pluginSettings: [:]))
            let parts = try #require(harness.runtime.reconfigurableParts)
            #expect(parts.router.mailboxLimit == 7)
            #expect(parts.requests.timeout == .milliseconds(1500))
        }
    }

}
