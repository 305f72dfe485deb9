import AgentCore
@_spi(Benchmarks) import AgentRuntime
import AgentState
import Foundation
import GRPCTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: The store alone (SQLiteStateStore's public API)

/// SQLiteStateStore alone, on fresh files: µs per call.
///   put 1 (normal|full)    one write in its own commit (what one agent's checkpoint costs)
///   put 64 (normal|full)   64 writes (of 64 agents) in one commit, per write
///   get                    a read of a stored state (an activation's read)
///   get missing            a read that finds nothing (a new agent's activation)
///   get during commits     p50 of a read while another thread commits batches of 64 writes
///                          with sync = full (an activation while other agents checkpoint: the
///                          store has one connection behind one lock, held for a whole commit)
func storeAlone(folder: String, round: Int) throws -> [(String, Double)] {
    var results: [(String, Double)] = []
    let bytes = [UInt8](repeating: 7, count: 24)
    for durability in [SQLiteStateStore.Durability.normal, .full] {
        let path = "\(folder)/alone-\(round)-\(durability.rawValue).db"
        let store = try SQLiteStateStore(path: path, durability: durability)
        let singles = durability == .full ? 200 : 2_000
        var revisions = [UInt64](repeating: 0, count: 64)
        // Warm: the rows exist (updates, as a checkpoint after the first is).
        _ = try store.put((0..<64).map { StateWrite(agent: AgentID(type: "bench-state", key: "k\($0)"), bytes: bytes, expectedRevision: 0) })
        revisions = revisions.map { _ in 1 }
        var start = nowNs()
        for index in 0..<singles {
            let key = index % 64
            revisions[key] = try store.put(AgentID(type: "bench-state", key: "k\(key)"), bytes, ifRevision: revisions[key])
        }
        results.append(("put 1 (\(durability.rawValue))", Double(nowNs() - start) / 1000 / Double(singles)))
        let batches = durability == .full ? 20 : 200
        start = nowNs()
        for _ in 0..<batches {
            let writes = (0..<64).map { StateWrite(agent: AgentID(type: "bench-state", key: "k\($0)"), bytes: bytes, expectedRevision: revisions[$0]) }
            let outcome = try store.put(writes)
            for (index, result) in outcome.enumerated() {
                guard case .success(let revision) = result else { throw RuntimeError("store alone: a batch write failed: \(result)") }
                revisions[index] = revision
            }
        }
        results.append(("put 64 (\(durability.rawValue)), per write", Double(nowNs() - start) / 1000 / Double(batches * 64)))
        if durability == .normal {
            let reads = 20_000
            start = nowNs()
            for index in 0..<reads { _ = try store.get(AgentID(type: "bench-state", key: "k\(index % 64)")) }
            results.append(("get", Double(nowNs() - start) / 1000 / Double(reads)))
            start = nowNs()
            for index in 0..<reads { _ = try store.get(AgentID(type: "bench-state", key: "missing\(index)")) }
            results.append(("get missing", Double(nowNs() - start) / 1000 / Double(reads)))
        }
        if durability == .full {
            let writing = Atomic<Bool>(true)
            let shared = StoreBox(store: store, revisions: revisions)
            let writer = Thread {
                var revisions = shared.revisions
                while writing.load(ordering: .relaxed) {
                    let writes = (0..<64).map { StateWrite(agent: AgentID(type: "bench-state", key: "k\($0)"), bytes: bytes, expectedRevision: revisions[$0]) }
                    guard let outcome = try? shared.store.put(writes) else { return }
                    for (index, result) in outcome.enumerated() { if case .success(let revision) = result { revisions[index] = revision } }
                }
            }
            writer.start()
            usleep(20_000)
            var samples: [UInt64] = []
            for index in 0..<300 {
                let begin = nowNs()
                _ = try store.get(AgentID(type: "bench-state", key: "k\(index % 64)"))
                samples.append(nowNs() - begin)
                usleep(200)
            }
            writing.store(false, ordering: .relaxed)
            while !writer.isFinished { usleep(1_000) }
            results.append(("get during commits (full), p50", quantileUs(samples.sorted(), 0.5)))
        }
    }
    return results
}

/// The store and the revisions reached, for the writing thread of ``storeAlone(folder:round:)``.
final class StoreBox: Sendable {
    let store: SQLiteStateStore
    let revisions: [UInt64]
    init(store: SQLiteStateStore, revisions: [UInt64]) {
        self.store = store
        self.revisions = revisions
    }
}
