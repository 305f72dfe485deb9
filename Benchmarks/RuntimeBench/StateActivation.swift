import AgentCore
@_spi(Benchmarks) import AgentRuntime
import AgentState
import Foundation
import GRPCTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: Activation: the first message to an agent whose state is stored

/// The activation cases of one round. Each pass is 2 × `keys` sequential RPCs from
/// bench-caller alternating, call by call, between an agent addressed for the first time and a
/// resident reference agent (bench-state/ref, warmed first), so that both see the same moment
/// of a noisy machine:
///   new+write / resident+write      Echo: agents never seen (a read that finds nothing,
///                                   create, the handler, the first write) / ref
///   stored+read / resident+read     after a restart on the same file: GetStats (activation:
///                                   read, create, restore; nothing is written, GetStats
///                                   changes nothing) / ref
///   stored+write / resident+write2  after another restart: Echo (activation and a write) / ref
///   off new / off resident          without a store: GetStats (create only) / ref
func activationRound(_ options: Options, folder: String, round: Int, into figures: inout StateFigures) async throws {
    let keys = options.stateActivationKeys
    let path = "\(folder)/activation.db"
    let prefix = "a\(round)"
    func pass(_ bench: StateRuntime, _ first: String, _ resident: String, _ messageType: String) async throws {
        _ = try await bench.stamps()
        let run = try await bench.callerRun(count: 2 * keys, key: prefix, keyCount: keys, messageType: messageType,
                                            stamps: true, alternateKey: "ref")
        if run.failed > 0 { throw RuntimeError("activation \(first): \(run.failed) of \(2 * keys) calls failed") }
        let entered = try await bench.stamps().filter { $0.kind == (messageType == "GetStats" ? UInt8(ascii: "G") : UInt8(ascii: "C")) }
        for (name, parity) in [(first, 0), (resident, 1)] {
            let indices = stride(from: parity, to: 2 * keys, by: 2)
            figures.activation[name, default: []].append(indices.map { run.samples[$0] }.sorted())
            // The request's way to the handler (the activation happens on it) and the answer's.
            guard let sent = run.sent, entered.count == 2 * keys else {
                note("activation \(name): \(entered.count) handler stamps for \(2 * keys) calls; no split")
                continue
            }
            let request = indices.map { entered[$0].ns &- sent[$0] }.sorted()
            let answer = indices.map { sent[$0] &+ run.samples[$0] &- entered[$0].ns }.sorted()
            figures.activationSplit[name, default: []].append((quantileUs(request, 0.5), quantileUs(answer, 0.5)))
        }
    }
    func warm(_ bench: StateRuntime, _ messageType: String) async throws {
        _ = try await bench.callerRun(count: 200, key: "ref", messageType: messageType)
        _ = try await bench.stamps()
    }
    var batches: [Int32] = []
    do {
        let bench = try await StateRuntime(mode: .normal, storePath: path)
        try await warm(bench, "Echo")
        let mark = bench.commits?.commits ?? 0
        try await pass(bench, "new+write", "resident+write", "Echo")
        batches += bench.commits?.batches(since: mark) ?? []
        await bench.stop()
    }
    do {
        let bench = try await StateRuntime(mode: .normal, storePath: path)
        try await warm(bench, "GetStats")
        try await pass(bench, "stored+read", "resident+read", "GetStats")
        let totals = try await bench.totals()
        if totals.restored < keys { note("activation: only \(totals.restored) of \(keys) agents were restored from the store") }
        await bench.stop()
    }
    do {
        let bench = try await StateRuntime(mode: .normal, storePath: path)
        try await warm(bench, "Echo")
        try await pass(bench, "stored+write", "resident+write2", "Echo")
        await bench.stop()
    }
    do {
        let bench = try await StateRuntime(mode: .off, storePath: nil)
        try await warm(bench, "GetStats")
        try await pass(bench, "off new", "off resident", "GetStats")
        await bench.stop()
    }
    let summary = CommitSummary(batches)
    if let previous = figures.activationCommits {
        figures.activationCommits = CommitSummary(
            commits: previous.commits + summary.commits, writes: previous.writes + summary.writes,
            empty: previous.empty + summary.empty, largest: max(previous.largest, summary.largest))
    } else {
        figures.activationCommits = summary
    }
    let p50 = figures.activation.mapValues { quantileUs($0.last!, 0.5) }
    note(String(format: "state activation round %d (%d agents, each pass alternating with a resident agent): p50 µs stored+read %.1f vs resident %.1f; stored+write %.1f vs resident %.1f; new+write %.1f vs resident %.1f; off new %.1f vs resident %.1f",
                round + 1, keys, p50["stored+read"]!, p50["resident+read"]!, p50["stored+write"]!, p50["resident+write2"]!,
                p50["new+write"]!, p50["resident+write"]!, p50["off new"]!, p50["off resident"]!))
}
