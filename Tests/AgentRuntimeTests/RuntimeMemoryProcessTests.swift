import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// `agentd run`'s resident memory (read from `/proc/PID/status`) under what the adversarial run
/// sent: 200 RPCs to distinct 1 MiB agent keys once left it 408 MiB larger.
/// Whether this process (and so the `agentd` beside it) runs under AddressSanitizer, whose
/// allocator keeps freed memory in quarantine: RSS then says nothing about what is held.
private let underAddressSanitizer = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "__asan_init") != nil

@Suite("agentd run's memory stays bounded under many large agents")
struct RuntimeMemoryProcessTests {
    @Test("200 RPCs to distinct 1 MiB keys are refused; 200 agents holding 1 MiB of state each stay under max_resident_bytes",
          .disabled(if: underAddressSanitizer, "AddressSanitizer's quarantine keeps freed memory resident"))
    func boundedMemory() async throws {
        try await AgentdRun.with(
            plugins: [("test-agents.so", "TestAgentsPlugin")], state: "path = state.db",
            // In one process: the memory measured is the runtime's (with its supervisor, `agentd
            // run`'s pid is the supervisor's, which holds no agents).
            ini: "[agents]\nmax_resident_bytes = 32 MiB\n", inProcess: true
        ) { run in
            let client = try WorkerClient(address: run.address)
            let before = run.residentBytes
            for index in 0..<200 {
                let key = "\(index)-" + String(repeating: "k", count: 1 << 20)
                await #expect(throws: RuntimeError.self) {
                    _ = try await client.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "counter", key: key))
                }
            }
            let afterKeys = run.residentBytes
            let state = #"{"blob": ""# + String(repeating: "x", count: 1 << 20) + #""}"#
            for index in 0..<200 {
                let key = "\(index)-" + String(repeating: "k", count: 1000)
                _ = try await client.send(Array(state.utf8), messageType: "Remember", to: AgentID(type: "memo", key: key))
            }
            // Retirement runs in the background, and the memory goes back at the next tick.
            var afterStates = 0
            _ = await poll(timeout: .seconds(20), every: .milliseconds(200)) {
                afterStates = run.residentBytes
                return afterStates - before < 160 << 20
            }
            let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
            print("agentd run RSS: \(mib(before)) at start, \(mib(afterKeys)) after 200 refused 1 MiB keys, \(mib(afterStates)) after 200 agents with 1 MiB of state (max_resident_bytes = 32 MiB)")
            // Unbounded, the states alone held 200 MiB in the plugin plus what the runtime keeps.
            #expect(afterKeys - before < 64 << 20, "\(mib(afterKeys - before))")
            #expect(afterStates - before < 160 << 20, "\(mib(afterStates - before))")
            await client.close()
        }
    }
}
