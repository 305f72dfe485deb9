import AgentCore
@testable import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// The probe checks the very bytes the runtime loads: its private shadow copy, not the path in
/// the plugin folder, which may be replaced at any moment. The test hook runs in the window
/// between the probe's verdict and the load (where a swapped file was once loaded unprobed
/// and crashed the runtime).
@Suite("The probe checks the copy that is loaded")
struct ProbeRaceTests {
    static var crashingPlugin: Data {
        get throws { try Data(contentsOf: URL(fileURLWithPath: "\(RuntimeHarness.buildDirectory)/libCrashingPlugin.so")) }
    }

    @Test("a plugin file swapped for a crashing one between the probe and the load: the probed copy is loaded; the new file is probed and refused at the next rescan")
    func swappedOriginal() async throws {
        let crashing = try Self.crashingPlugin
        let swaps = AsyncCondition(0)
        let harness = try await RuntimeHarness.start(
            plugins: [("echo.so", "EchoAgent")], probe: true,
            configure: { configuration in
                configuration.pluginProbed = { copy in
                    guard swaps.value == 0 else { return }
                    swaps.mutate { $0 += 1 }
                    // An atomic rename, as a user drops a plugin in.
                    let staged = (copy.path as NSString).deletingLastPathComponent + "/.echo.so.tmp"
                    _ = FileManager.default.createFile(atPath: staged, contents: crashing)
                    rename(staged, copy.path)
                }
            })
        #expect(swaps.value == 1)
        #expect(harness.runtime.plugins.map(\.name) == ["echo-plugin"])
        #expect(try await harness.call("echo/a", "Echo", #"{"text": "probed"}"#) == #"{"text": "probed"}"#)
        // The file on disk now is the crashing one: probed like any new version, and refused.
        let mark = harness.log.count
        await harness.runtime.rescan()
        let refused = await harness.log.wait(since: mark) { $0.message.contains("new plugin version refused") }
        #expect(refused?.metadata["reason"]?.contains("crashed while loading") == true, "\(String(describing: refused))")
        #expect(try await harness.call("echo/a", "Echo", #"{"text": "still"}"#) == #"{"text": "still"}"#)
        await harness.stop()
    }

    @Test("a shadow copy that changed after its probe is refused, never loaded")
    func changedShadowCopy() async throws {
        let crashing = try Self.crashingPlugin
        let harness = try await RuntimeHarness.start(
            plugins: [("a-echo.so", "EchoAgent"), ("b-greeter.so", "GreeterAgent")], probe: true,
            configure: { configuration in
                configuration.pluginProbed = { copy in
                    guard copy.path.hasSuffix("a-echo.so") else { return }
                    chmod(copy.shadowPath, 0o700)
                    _ = FileManager.default.createFile(atPath: copy.shadowPath, contents: crashing)
                }
            })
        let refused = harness.log.records { $0.message == "plugin refused" }
        #expect(refused.count == 1)
        #expect(refused.first?.metadata["plugin.path"]?.hasSuffix("a-echo.so") == true)
        #expect(refused.first?.metadata["reason"]?.contains("changed between the probe and the load") == true, "\(refused)")
        #expect(harness.runtime.plugins.map(\.name) == ["greeter-plugin"])
        await harness.stop()
    }
}
