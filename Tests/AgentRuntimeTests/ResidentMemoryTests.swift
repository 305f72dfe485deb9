import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Testing

/// What a peer can make the runtime hold: agent types and keys have a maximum length, and the
/// resident agents are bounded in bytes as well as in number (``AgentRuntime/Configuration/maxResidentBytes``).
@Suite("Resident agents are bounded in bytes; agent types and keys in length")
struct ResidentMemoryTests {
    @Test("an RPC whose target key is longer than FieldLimits.agentKey is answered with an error naming the field; the longest is served")
    func oversizedIdentifiers() async throws {
        try await withRuntime(plugins: [("test-agents.so", "TestAgentsPlugin")]) { harness in
            // (Our host refuses it before the runtime sees it; behind AutoGen's host, which sets
            // no limit, the runtime refuses it with the same field named.)
            let longKey = String(repeating: "k", count: FieldLimits.agentKey + 1)
            let keyError = await #expect(throws: RuntimeError.self) {
                _ = try await harness.client.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "counter", key: longKey))
            }
            #expect(keyError?.message.contains("RpcRequest.target.key is 1025 bytes long") == true, "\(String(describing: keyError))")
            let longest = String(repeating: "k", count: FieldLimits.agentKey)
            let answer = try await harness.client.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "counter", key: longest))
            #expect(String(decoding: answer.payload, as: UTF8.self).contains(#""count": 0"#))
        }
    }

    @Test("past max_resident_bytes the least recently used agents are retired (checkpointed first) and come back from the store")
    func boundedInBytes() async throws {
        let store = NSTemporaryDirectory() + "agentd-bytes-\(UUID().uuidString).db"
        defer { try? FileManager.default.removeItem(atPath: store) }
        let bound = 8 << 20
        let harness = try await RuntimeHarness.start(
            plugins: [("test-agents.so", "TestAgentsPlugin")], stateStorePath: store,
            configure: { $0.maxResidentBytes = bound })
        // 40 agents with 1 KiB keys, each holding 512 KiB of state: 20 MiB unbounded.
        let state = #"{"blob": ""# + String(repeating: "x", count: 512 * 1024) + #""}"#
        let keys = (0..<40).map { "\($0)-" + String(repeating: "k", count: 1000) }
        for key in keys {
            _ = try await harness.client.send(Array(state.utf8), messageType: "Remember", to: AgentID(type: "memo", key: key))
        }
        let bounded = await poll(timeout: .seconds(20)) {
            harness.runtime.agentStatistics.residentBytes <= bound
        }
        let statistics = harness.runtime.agentStatistics
        #expect(bounded, "\(statistics)")
        #expect(statistics.deactivations > 0 && statistics.resident < 40, "\(statistics)")
        // The first agent was retired (least recently used): its state comes back from the store.
        let recalled = try await harness.client.send(Array("{}".utf8), messageType: "Recall", to: AgentID(type: "memo", key: keys[0]))
        #expect(String(decoding: recalled.payload, as: UTF8.self) == state)
        await harness.stop()
    }
}
