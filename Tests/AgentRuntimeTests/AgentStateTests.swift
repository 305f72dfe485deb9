import AgentCore
@testable import AgentRuntime
import AgentState
import AgentTestSupport
import Foundation
import Testing

/// Agents whose plugin offers snapshot/restore keep their state in the SQLite store: across a
/// restart of the runtime, across retirement (idle or least recently used), and across a hot
/// reload that the new version must be able to take over; a state the plugin refuses is kept
/// and reported, never silently dropped.
@Suite("Agents keep their state")
struct AgentStateTests {
    static let counter = [(file: "test-agents.so", product: "TestAgentsPlugin")]
    static let versioned = [(file: "versioned.so", product: "VersionedPluginV1")]

    /// A fresh folder for a store file.
    private func storePath() throws -> String {
        let folder = NSTemporaryDirectory() + "agentd-state-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        return "\(folder)/agents.db"
    }

    /// The test plugin's counter state: version byte 1, then the count (8 bytes, little-endian).
    private func counterState(_ count: UInt64) -> [UInt8] {
        [1] + (0..<8).map { UInt8(truncatingIfNeeded: count >> (8 * $0)) }
    }

    /// The counter's count, from `Get`'s JSON answer.
    private func count(_ harness: RuntimeHarness, _ agent: String) async throws -> Int {
        let answer = try await harness.call(agent, "Get", "{}")
        let object = try JSONSerialization.jsonObject(with: Data(answer.utf8)) as? [String: Any]
        return try #require(object?["count"] as? Int, "answer: \(answer)")
    }

    /// Publishes `n` events to the counter `key` and waits until it counted them.
    private func add(_ n: Int, to key: String, _ harness: RuntimeHarness, expecting total: Int) async throws {
        for _ in 0..<n {
            try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count", source: key))
        }
        let counted = try await poll { try await count(harness, "counter/\(key)") == total }
        #expect(counted, "counter/\(key) never reached \(total)")
    }

    @Test("a counter's state survives a restart of the runtime")
    func survivesRestart() async throws {
        let path = try storePath()
        let first = try await RuntimeHarness.start(plugins: Self.counter, stateStorePath: path)
        try await add(5, to: "k", first, expecting: 5)
        let statistics = first.runtime.agentStatistics
        #expect((1...5).contains(statistics.checkpoints), "events queued together share a checkpoint: \(statistics)")
        await first.stop()
        let second = try await RuntimeHarness.start(plugins: Self.counter, stateStorePath: path)
        #expect(try await count(second, "counter/k") == 5)
        #expect(try await count(second, "counter/other") == 0)
        await second.stop()
    }

    @Test("an answered RPC's effect is in the store when its answer arrives")
    func answerAfterCommit() async throws {
        let path = try storePath()
        try await withRuntime(plugins: Self.versioned, stateStorePath: path) { harness in
            let reader = try SQLiteStateStore(path: path)
            for value in 1...20 {
                _ = try await harness.call("versioned/a", "Set", #"{"count": \#(value)}"#)
                let stored = try #require(try reader.get(AgentID(type: "versioned", key: "a")))
                let bytes = stored.bytes
                let count = (0..<8).reduce(0) { $0 | Int(bytes[$1]) << (8 * $1) }
                #expect(count == value, "answered Set(\(value)) but the store holds \(count)")
            }
        }
    }

    @Test("idle agents are retired and come back with their state")
    func idleRetirement() async throws {
        let path = try storePath()
        try await withRuntime(plugins: Self.counter, stateStorePath: path, idleAgentTimeout: .milliseconds(200)) { harness in
            try await add(3, to: "idle", harness, expecting: 3)
            let retired = await poll { harness.runtime.agentStatistics.resident == 0 }
            #expect(retired, "still resident: \(harness.runtime.agentStatistics)")
            #expect(harness.runtime.agentStatistics.deactivations >= 1)
            #expect(try await count(harness, "counter/idle") == 3, "activated again from the store")
        }
    }

    @Test("past max_resident the least recently used agents are retired; their state stays")
    func residentBound() async throws {
        let path = try storePath()
        try await withRuntime(plugins: Self.counter, stateStorePath: path, maxResidentAgents: 50) { harness in
            for key in 0..<300 {
                try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "count", source: "k\(key)"))
            }
            let settled = await poll(timeout: .seconds(20)) {
                let statistics = harness.runtime.agentStatistics
                return statistics.checkpoints >= 300 && statistics.resident <= 50
            }
            #expect(settled, "\(harness.runtime.agentStatistics)")
            #expect(try await count(harness, "counter/k0") == 1)
            #expect(try await count(harness, "counter/k299") == 1)
        }
    }

    @Test("a stored state the plugin refuses is kept and reported until it is deleted")
    func refusedStoredState() async throws {
        let path = try storePath()
        let writer = try SQLiteStateStore(path: path)
        let agent = AgentID(type: "counter", key: "broken")
        _ = try writer.put(agent, Array("not a counter".utf8), ifRevision: 0)
        try await withRuntime(plugins: Self.counter, stateStorePath: path) { harness in
            for _ in 0..<2 {
                let error = await #expect(throws: RuntimeError.self) { _ = try await harness.call("counter/broken", "Get", "{}") }
                #expect(error?.message.contains("cannot start") == true, "\(error?.message ?? "")")
                #expect(error?.message.contains("agentd state delete") == true)
            }
            let kept = try writer.get(agent)
            #expect(kept?.bytes == Array("not a counter".utf8), "the row stays")
            let deleted = await harness.runtime.stateControl!.deleteState(of: agent)
            #expect(throws: Never.self) { try deleted.get() }
            let fresh = try await count(harness, "counter/broken")
            #expect(fresh == 0)
        }
    }

    @Test("save and load through the state control: loaded state serves, refused state changes nothing")
    func saveAndLoad() async throws {
        let path = try storePath()
        try await withRuntime(plugins: Self.counter, stateStorePath: path) { harness in
            let control = try #require(harness.runtime.stateControl)
            let agent = AgentID(type: "counter", key: "s")
            let loaded = await control.loadState(counterState(42), into: agent)
            #expect(throws: Never.self) { try loaded.get() }
            #expect(try await count(harness, "counter/s") == 42)
            #expect(try await control.saveState(of: agent).get() == counterState(42))
            let refused = await control.loadState(Array("junk".utf8), into: agent)
            #expect(throws: StateControlError.self) { try refused.get() }
            #expect(try await count(harness, "counter/s") == 42)
            let unknown = await control.saveState(of: AgentID(type: "nobody", key: "x"))
            #expect(throws: StateControlError.self) { try unknown.get() }
            let stateless = await control.saveState(of: AgentID(type: "failing", key: "x"))
            #expect(throws: StateControlError.self) { try stateless.get() }
        }
    }

    @Test("another writer's revision fences a checkpoint: the RPC is an error and the agent restarts from the store")
    func fencedCheckpoint() async throws {
        let path = try storePath()
        try await withRuntime(plugins: Self.versioned, stateStorePath: path) { harness in
            _ = try await harness.call("versioned/f", "Set", #"{"count": 5}"#)
            let other = try SQLiteStateStore(path: path)
            let agent = AgentID(type: "versioned", key: "f")
            let stored = try #require(try other.get(agent))
            let hundred: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: 100 >> (8 * $0)) }
            _ = try other.put(agent, hundred, ifRevision: stored.revision)
            let error = await #expect(throws: RuntimeError.self) { _ = try await harness.call("versioned/f", "Set", #"{"count": 6}"#) }
            #expect(error?.message.contains("could not be saved") == true, "\(error?.message ?? "")")
            let answer = try await harness.call("versioned/f", "Get", "{}")
            #expect(answer.contains(#""count": 100"#), "restarted from the store: \(answer)")
            #expect(harness.runtime.agentStatistics.checkpointFailures == 1)
        }
    }

    @Test("a hot reload whose restore refuses a live agent's state is refused; the old version keeps serving")
    func reloadRefusedForState() async throws {
        let path = try storePath()
        try await withRuntime(plugins: Self.versioned, stateStorePath: path) { harness in
            _ = try await harness.call("versioned/r", "Set", #"{"count": -5}"#)
            let file = "\(harness.pluginDirectory)/versioned.so"
            let v2 = "\(RuntimeHarness.buildDirectory)/libVersionedPluginV2.so"
            try FileManager.default.removeItem(atPath: file)
            try FileManager.default.copyItem(atPath: v2, toPath: file)
            await harness.runtime.rescan()
            let refusal = await harness.log.first { $0.message.contains("refused") && ($0.metadata["reason"] ?? "").contains("versioned/r") }
            #expect(refusal != nil, "one line naming the plugin, the agent and the reason")
            #expect(refusal?.metadata["reason"]?.contains("versioned 2.0.0") == true)
            let answer = try await harness.call("versioned/r", "Get", "{}")
            #expect(answer.contains(#""version": 1"#) && answer.contains(#""count": -5"#), "\(answer)")
            // Once the state is one version 2 accepts, the same file is taken.
            _ = try await harness.call("versioned/r", "Set", #"{"count": 7}"#)
            await harness.runtime.rescan()
            let moved = try await poll {
                let now = try await harness.call("versioned/r", "Get", "{}")
                return now.contains(#""version": 2"#) && now.contains(#""count": 7"#)
            }
            #expect(moved)
        }
    }

    @Test("a store that cannot be opened stops the start with an error naming the file")
    func unopenableStore() async throws {
        let folder = NSTemporaryDirectory() + "agentd-state-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: "\(folder)/plain-file", contents: Data("x".utf8))
        let path = "\(folder)/plain-file/agents.db"
        var error: RuntimeError?
        do {
            let started = try await RuntimeHarness.start(plugins: Self.counter, stateStorePath: path)
            await started.stop()
        } catch let failure as RuntimeError {
            error = failure
        }
        #expect(error != nil, "the start went ahead without its store")
        #expect(error?.message.contains(path) == true, "\(error?.message ?? "")")
    }
}
