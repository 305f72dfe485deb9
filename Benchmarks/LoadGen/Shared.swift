// Benchmarks/shared's additions to compare-loadgen (see main.swift's header): load on a *shared*
// agent type, bench-work (Benchmarks/Plugins/BenchAgents), served by several runtimes at once.
//
//   --shared-mode throughput   --work-lanes N lanes (RPCs in flight), each cycling through its
//            share of --work-keys K keys (key-0 … key-K-1; lane i has keys i, i+N, …), one Work
//            RPC at a time, back to back: every key has at most one RPC in flight, so its
//            counter must go up by exactly one per answer. Warm-up until every lane went once
//            through its keys (all K activated) and --work-warmup S passed; then prints
//            `measuring`, counts the answers for --work-seconds S, prints `measured`, stops,
//            reads every key's counter back (Peek) and prints one JSON object.
//   --shared-mode move   steady load across a change of the runtimes serving the type:
//            --move-lanes L lanes share --move-rate R Work RPCs/s over the K keys (paced), and
//            probe keys get sequential RPCs (Work of --probe-us µs, --probe-pause-ms after each
//            answer): --probes P keys that the placement moves when the runtimes serving the
//            type go from --members A,B to --members-after A,B,C (or A: Placement.owner, the
//            host's rendezvous hashing, over the runtimes' client ids), and --controls Q keys
//            it leaves where they are. After --steady S prints `ready`; reads `mark NS` (the
//            CLOCK_MONOTONIC time of the join, stop or kill) on stdin; goes on --after-mark S
//            more; stops, reads every key back (Peek) and prints one JSON object: per moved key
//            the gap between its last answer from the runtime it left and its first from the one
//            it came to; the errors after the mark; and the counters' checks. And --pipelined
//            keys that move, each with --pipeline-depth RPCs in flight (--pipeline-pause-ms after
//            each answer): the runtime a key leaves may still handle what was queued for it while
//            the new one answers it already; every answered RPC's effect must still be stored once.
//
// Every Work answer says which runtime answered (`rt`, its [plugin.bench-agents] label), the
// key's counter after the call and the CPU the handler's loop took. The checks, per key (its
// RPCs are sequential): an answer whose counter is not above the previous answer's is a LOST
// count (an answered RPC's effect gone); one more than a step above it with no failed RPC in
// between is an effect applied twice; steps over failed RPCs are their effects kept although
// their answer was an error (allowed: a runtime killed after the commit, before the answer).
// A key answered again by the runtime it left after the one it came to had answered it: active
// on two runtimes.
import AgentCore
import AgentRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

struct SharedOptions {
    /// "throughput" or "move"; nil: not this driver.
    var mode: String? = nil
    var keys = 2_000
    var lanes = 64
    var workUs = 1_000
    var warmupSeconds = 3.0
    var measureSeconds = 10.0
    var moveRate = 300.0
    var moveLanes = 64
    var probes = 40
    var controls = 10
    /// Keys that move with several RPCs in flight each (not sequential: the old runtime may still
    /// handle what was queued for the key while the new one already answers it).
    var pipelined = 8
    var pipelineDepth = 3
    var pipelinePauseMs = 30
    var probePauseMs = 20
    var probeUs = 0
    var retryPauseMs = 5
    var membersBefore: [String] = []
    var membersAfter: [String] = []
    var steady = 2.0
    var afterMark = 5.0
    /// An RPC slower than this is counted as slow.
    var deadlineMs = 2_000
    /// WorkerClient's timeout of each RPC.
    var timeoutMs = 10_000
}

struct WorkRecord: Sendable {
    var key: Int
    var start: Int64
    var end: Int64
    var outcome: RPCOutcome
    /// The key's counter after the call (ok answers), else -1.
    var count: Int64
    /// The runtime that answered (ok answers).
    var rt: String
    var cpuNs: Int64
    var message: String?
}

final class SharedControl: Sendable {
    let stop = Atomic<Bool>(false)
    /// Lanes that went once through all their keys.
    let lanesPassed = Atomic<Int>(0)
    let markNs = Atomic<Int64>(0)
}

private func workPayload(_ us: Int) -> [UInt8] { Array("{\"us\": \(us)}".utf8) }

/// One RPC (`Work` or `Peek`) to bench-work/`key`, timed.
func workCall(_ client: WorkerClient, key: String, index: Int, messageType: String, payload: [UInt8],
              timeoutMs: Int) async -> WorkRecord {
    let start = monotonicNs()
    var record = WorkRecord(key: index, start: start, end: 0, outcome: .ok, count: -1, rt: "", cpuNs: 0, message: nil)
    do {
        let answer = try await client.send(
            payload, messageType: messageType, to: AgentID(type: "bench-work", key: key), timeout: .milliseconds(timeoutMs))
        record.end = monotonicNs()
        if answer.messageType == "WorkDone",
           let object = try? JSONSerialization.jsonObject(with: Data(answer.payload)) as? [String: Any],
           let count = (object["count"] as? NSNumber)?.int64Value, let rt = object["rt"] as? String {
            record.count = count
            record.rt = rt
            record.cpuNs = (object["cpu_ns"] as? NSNumber)?.int64Value ?? 0
        } else {
            record.outcome = .error
            record.message = "unexpected answer \(answer.messageType) \(String(decoding: answer.payload.prefix(100), as: UTF8.self))"
        }
    } catch {
        record.end = monotonicNs()
        let text = "\(error)"
        record.outcome = text.hasPrefix("no answer from") ? .timeout : .error
        record.message = text
    }
    return record
}

/// Error texts with key names and ids folded, counted.
func groupMessages(_ records: [WorkRecord]) -> [String: Int] {
    var messages: [String: Int] = [:]
    for r in records where r.outcome != .ok {
        var text = r.message ?? "?"
        text = text.replacingOccurrences(of: #"(key|probe)-\d+"#, with: "$1-N", options: .regularExpression)
        text = text.replacingOccurrences(
            of: #"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"#, with: "ID", options: .regularExpression)
        text = text.replacingOccurrences(of: #"\b\d+\b"#, with: "N", options: .regularExpression)
        messages[String(text.prefix(300)), default: 0] += 1
    }
    return messages
}

func quantileMs(_ values: [Double], _ q: Double) -> Double? {
    guard !values.isEmpty else { return nil }
    let sorted = values.sorted()
    return sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
}

/// Reads every key's counter (Peek), `concurrency` at a time: the counters, nil where it failed.
func peekAll(_ client: WorkerClient, keys: [String], concurrency: Int, timeoutMs: Int) async -> ([Int64?], [WorkRecord]) {
    var finals = [Int64?](repeating: nil, count: keys.count)
    var failures: [WorkRecord] = []
    let empty = Array("{}".utf8)
    await withTaskGroup(of: [WorkRecord].self) { group in
        for lane in 0..<concurrency {
            group.addTask {
                var out: [WorkRecord] = []
                for index in stride(from: lane, to: keys.count, by: concurrency) {
                    out.append(await workCall(client, key: keys[index], index: index, messageType: "Peek", payload: empty,
                                              timeoutMs: timeoutMs))
                }
                return out
            }
        }
        for await records in group {
            for r in records {
                if r.outcome == .ok { finals[r.key] = r.count } else { failures.append(r) }
            }
        }
    }
    return (finals, failures)
}

/// The counters' checks over every key's RPCs (sequential per key, the store empty at the
/// start) and its final Peek. `mark`: times in the details are relative to it.
func counterChecks(_ records: [WorkRecord], keys: [String], finals: [Int64?], mark: Int64,
                   skipping skipped: Range<Int> = 0..<0) -> [String: Any] {
    var byKey = [[WorkRecord]](repeating: [], count: keys.count)
    for r in records where !skipped.contains(r.key) { byKey[r.key].append(r) }
    var lost = 0, twice = 0, keptAfterFailure = 0, finalLost = 0, finalTwice = 0, finalKept = 0, unread = 0
    var details: [String] = []
    func detail(_ text: String) { if details.count < 30 { details.append(text) } }
    for (index, list) in byKey.enumerated() where !skipped.contains(index) {
        var previous: Int64 = 0
        var previousRT = "(start)"
        var failures = 0
        for r in list.sorted(by: { $0.start < $1.start }) {
            guard r.outcome == .ok else {
                failures += 1
                continue
            }
            let step = r.count - previous
            if step <= 0 {
                lost += 1
                detail("\(keys[index]): counter \(r.count) from \(r.rt) at \(Double(r.end - mark) / 1e6) ms after the mark, after \(previous) from \(previousRT) (failed RPCs between: \(failures))")
            } else if step > 1 + Int64(failures) {
                twice += Int(step) - 1 - failures
                detail("\(keys[index]): counter \(r.count) from \(r.rt) at \(Double(r.end - mark) / 1e6) ms after the mark, after \(previous) from \(previousRT): \(step) steps over \(failures) failed RPC(s)")
            } else if step > 1 {
                keptAfterFailure += Int(step) - 1
            }
            previous = r.count
            previousRT = r.rt
            failures = 0
        }
        guard let final = finals[index] else {
            unread += 1
            continue
        }
        if final < previous {
            finalLost += 1
            detail("\(keys[index]): final counter \(final) below its last answer's \(previous) (from \(previousRT))")
        } else if final > previous + Int64(failures) {
            finalTwice += Int(final - previous) - failures
            detail("\(keys[index]): final counter \(final) over its last answer's \(previous) + \(failures) failed RPC(s)")
        } else if final > previous {
            finalKept += Int(final - previous)
        }
    }
    return [
        "lost": lost, "applied_twice": twice, "kept_after_failure": keptAfterFailure,
        "final_lost": finalLost, "final_applied_twice": finalTwice, "final_kept_after_failure": finalKept,
        "final_unread": unread, "details": details,
    ]
}

/// Waits until the host routes to bench-work (a Peek of key `probe` answered): the seconds waited.
func awaitWorkRoute(_ client: WorkerClient, timeout: Double) async throws -> Double {
    let began = monotonicNs()
    let empty = Array("{}".utf8)
    while true {
        let r = await workCall(client, key: "route-probe", index: 0, messageType: "Peek", payload: empty, timeoutMs: 2_000)
        if r.outcome == .ok { return Double(monotonicNs() - began) / 1e9 }
        if Double(monotonicNs() - began) / 1e9 > timeout {
            fail("the host does not route to bench-work within \(timeout) s (last error: \(r.message ?? "?"))")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

// MARK: Throughput

func runSharedThroughput(_ client: WorkerClient, options o: SharedOptions) async throws -> [String: Any] {
    let keys = (0..<o.keys).map { "key-\($0)" }
    let control = SharedControl()
    let payload = workPayload(o.workUs)
    let lanes = min(o.lanes, o.keys)
    let began = monotonicNs()
    let tasks = (0..<lanes).map { lane in
        Task { () -> [WorkRecord] in
            let mine = Array(stride(from: lane, to: keys.count, by: lanes))
            var records: [WorkRecord] = []
            records.reserveCapacity(50_000)
            var position = 0
            while !control.stop.load(ordering: .relaxed) {
                let index = mine[position % mine.count]
                let r = await workCall(client, key: keys[index], index: index, messageType: "Work", payload: payload,
                                       timeoutMs: o.timeoutMs)
                records.append(r)
                position += 1
                if position == mine.count { control.lanesPassed.add(1, ordering: .relaxed) }
                if r.outcome != .ok { try? await Task.sleep(for: .milliseconds(o.retryPauseMs)) }
            }
            return records
        }
    }
    let warmLimit = began + 120_000_000_000
    while control.lanesPassed.load(ordering: .relaxed) < lanes || Double(monotonicNs() - began) / 1e9 < o.warmupSeconds {
        if monotonicNs() > warmLimit { break }
        try await Task.sleep(for: .milliseconds(10))
    }
    let warmed = monotonicNs()
    FileHandle.standardOutput.write(Data("measuring\n".utf8))
    try await Task.sleep(for: .milliseconds(Int(o.measureSeconds * 1000)))
    let ended = monotonicNs()
    FileHandle.standardOutput.write(Data("measured\n".utf8))
    control.stop.store(true, ordering: .relaxed)
    var records: [WorkRecord] = []
    for task in tasks { records += await task.value }
    let (finals, peekFailures) = await peekAll(client, keys: keys, concurrency: 32, timeoutMs: o.timeoutMs)

    let window = records.filter { $0.end >= warmed && $0.end < ended }
    let ok = window.filter { $0.outcome == .ok }
    let seconds = Double(ended - warmed) / 1e9
    let latencies = ok.filter { $0.start >= warmed }.map { Double($0.end - $0.start) / 1e6 }
    var byRuntime: [String: Int] = [:]
    for r in ok { byRuntime[r.rt, default: 0] += 1 }
    let worked = ok.filter { $0.cpuNs > 0 }
    var figures: [String: Any] = [
        "keys": o.keys, "lanes": lanes, "work_us": o.workUs, "seconds": seconds,
        "warmup_s": Double(warmed - began) / 1e9, "warmup_complete": control.lanesPassed.load(ordering: .relaxed) >= lanes,
        "answered": ok.count, "rpcs_per_s": Double(ok.count) / seconds,
        "errors": window.filter { $0.outcome == .error }.count, "timeouts": window.filter { $0.outcome == .timeout }.count,
        "errors_total": records.filter { $0.outcome != .ok }.count, "rpcs_total": records.count,
        "by_runtime": byRuntime, "messages": groupMessages(records + peekFailures),
        "handler_cpu_us_mean": worked.isEmpty ? 0 : Double(worked.reduce(0) { $0 + $1.cpuNs }) / Double(worked.count) / 1000,
        "peek_failures": peekFailures.count,
        "checks": counterChecks(records, keys: keys, finals: finals, mark: warmed),
    ]
    if let v = quantileMs(latencies, 0.5) { figures["p50_ms"] = v }
    if let v = quantileMs(latencies, 0.99) { figures["p99_ms"] = v }
    return figures
}

// MARK: Moves

func runSharedMove(_ client: WorkerClient, options o: SharedOptions) async throws -> [String: Any] {
    guard !o.membersBefore.isEmpty, !o.membersAfter.isEmpty else { fail("--shared-mode move needs --members and --members-after") }
    // The keys: background key-0 … key-K-1, then the probes (predicted to move) and the controls.
    var allKeys = (0..<o.keys).map { "key-\($0)" }
    func moves(_ key: String) -> Bool {
        Placement.owner(type: "bench-work", key: key, among: o.membersBefore)
            != Placement.owner(type: "bench-work", key: key, among: o.membersAfter)
    }
    var probeKeys: [String] = []
    var controlKeys: [String] = []
    var pipeKeys: [String] = []
    var candidate = 0
    while probeKeys.count < o.probes || controlKeys.count < o.controls || pipeKeys.count < o.pipelined {
        if candidate > 1_000_000 { fail("no keys move from \(o.membersBefore) to \(o.membersAfter)") }
        let key = "probe-\(candidate)", pipe = "pipe-\(candidate)"
        candidate += 1
        if moves(key) {
            if probeKeys.count < o.probes { probeKeys.append(key) }
        } else if controlKeys.count < o.controls {
            controlKeys.append(key)
        }
        if pipeKeys.count < o.pipelined && moves(pipe) { pipeKeys.append(pipe) }
    }
    let probeBase = allKeys.count
    allKeys += probeKeys + controlKeys
    let pipeBase = allKeys.count
    allKeys += pipeKeys
    let keys = allKeys
    let predictedMove = keys.map {
        Placement.owner(type: "bench-work", key: $0, among: o.membersBefore)
            != Placement.owner(type: "bench-work", key: $0, among: o.membersAfter)
    }
    let control = SharedControl()
    let reader = Thread {
        while let line = readLine() {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == "mark", let ns = Int64(words[1]) {
                control.markNs.store(ns, ordering: .sequentiallyConsistent)
            }
        }
        _ = control.markNs.compareExchange(expected: 0, desired: -1, ordering: .sequentiallyConsistent)
    }
    reader.start()

    let work = workPayload(o.workUs)
    let probeWork = workPayload(o.probeUs)
    let lanes = max(1, min(o.moveLanes, o.keys))
    let interval = Int64(Double(lanes) / max(o.moveRate, 0.001) * 1e9)
    var tasks: [Task<[WorkRecord], Never>] = (0..<lanes).map { lane in
        Task {
            let mine = Array(stride(from: lane, to: o.keys, by: lanes))
            var records: [WorkRecord] = []
            records.reserveCapacity(20_000)
            var position = 0
            var next = monotonicNs() + Int64(lane) * interval / Int64(lanes)
            while !control.stop.load(ordering: .relaxed) {
                let now = monotonicNs()
                if next > now { try? await Task.sleep(for: .nanoseconds(next - now)) }
                next = max(next + interval, monotonicNs())
                let index = mine[position % mine.count]
                records.append(await workCall(client, key: keys[index], index: index, messageType: "Work", payload: work,
                                              timeoutMs: o.timeoutMs))
                position += 1
            }
            return records
        }
    }
    tasks += (probeBase..<pipeBase).map { index in
        Task {
            var records: [WorkRecord] = []
            records.reserveCapacity(20_000)
            while !control.stop.load(ordering: .relaxed) {
                let r = await workCall(client, key: keys[index], index: index, messageType: "Work", payload: probeWork,
                                       timeoutMs: o.timeoutMs)
                records.append(r)
                try? await Task.sleep(for: .milliseconds(r.outcome == .ok ? o.probePauseMs : o.retryPauseMs))
            }
            return records
        }
    }
    for index in pipeBase..<keys.count {
        for _ in 0..<o.pipelineDepth {
            tasks.append(Task {
                var records: [WorkRecord] = []
                records.reserveCapacity(20_000)
                while !control.stop.load(ordering: .relaxed) {
                    let r = await workCall(client, key: keys[index], index: index, messageType: "Work", payload: probeWork,
                                           timeoutMs: o.timeoutMs)
                    records.append(r)
                    try? await Task.sleep(for: .milliseconds(r.outcome == .ok ? o.pipelinePauseMs : o.retryPauseMs))
                }
                return records
            })
        }
    }
    try await Task.sleep(for: .milliseconds(Int(o.steady * 1000)))
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    let waitLimit = monotonicNs() + 600_000_000_000
    while control.markNs.load(ordering: .sequentiallyConsistent) == 0 && monotonicNs() < waitLimit {
        try await Task.sleep(for: .milliseconds(5))
    }
    let mark = control.markNs.load(ordering: .sequentiallyConsistent)
    if mark > 0 {
        let until = mark + Int64(o.afterMark * 1e9)
        while monotonicNs() < until { try await Task.sleep(for: .milliseconds(5)) }
    }
    control.stop.store(true, ordering: .relaxed)
    var records: [WorkRecord] = []
    for task in tasks { records += await task.value }
    guard mark > 0 else { fail("no `mark NS` line on stdin") }
    try await Task.sleep(for: .milliseconds(300))
    let (finals, peekFailures) = await peekAll(client, keys: keys, concurrency: 32, timeoutMs: o.timeoutMs)
    return moveFigures(records, keys: keys, probeRange: probeBase..<(probeBase + probeKeys.count),
                       controlRange: (probeBase + probeKeys.count)..<pipeBase, pipeRange: pipeBase..<keys.count,
                       predictedMove: predictedMove,
                       finals: finals, peekFailures: peekFailures, mark: mark, options: o)
}

/// Where a key moved: its last answer from the runtime it left (before the mark) and its first
/// from another one after the mark; whether the runtime it left answered it again after that.
private struct KeyMove {
    var from: String
    var to: String
    var lastOld: Int64
    var firstNew: Int64
    var firstNewRPCms: Double
    var oldAgain: Int
}

private func keyMove(_ list: [WorkRecord], mark: Int64) -> KeyMove? {
    let ok = list.filter { $0.outcome == .ok }.sorted { $0.end < $1.end }
    guard let before = ok.last(where: { $0.end < mark }) else { return nil }
    guard let first = ok.first(where: { $0.end >= mark && $0.rt != before.rt }) else { return nil }
    let lastOld = ok.last(where: { $0.end < first.end && $0.rt == before.rt })?.end ?? before.end
    let oldAgain = ok.filter { $0.end > first.end && $0.rt == before.rt }.count
    return KeyMove(from: before.rt, to: first.rt, lastOld: lastOld, firstNew: first.end,
                   firstNewRPCms: Double(first.end - first.start) / 1e6, oldAgain: oldAgain)
}

func moveFigures(_ records: [WorkRecord], keys: [String], probeRange: Range<Int>, controlRange: Range<Int>,
                 pipeRange: Range<Int>, predictedMove: [Bool], finals: [Int64?], peekFailures: [WorkRecord], mark: Int64,
                 options o: SharedOptions) -> [String: Any] {
    func ms(_ ns: Int64) -> Double { Double(ns) / 1e6 }
    var byKey = [[WorkRecord]](repeating: [], count: keys.count)
    for r in records { byKey[r.key].append(r) }
    var moves = [KeyMove?](repeating: nil, count: keys.count)
    for index in keys.indices { moves[index] = keyMove(byKey[index], mark: mark) }

    let probeMoves = probeRange.compactMap { moves[$0] }
    let probeGaps = probeMoves.map { ms($0.firstNew - $0.lastOld) }
    let probeSwitch = probeMoves.map { ms($0.firstNew - mark) }
    // Controls: the gap between their answers around the moment the median probe moved.
    let switchAt = quantileMs(probeMoves.map { Double($0.firstNew) }, 0.5).map { Int64($0) } ?? mark
    var controlGaps: [Double] = []
    var controlMoved = 0
    for index in controlRange {
        if moves[index] != nil { controlMoved += 1 }
        let ok = byKey[index].filter { $0.outcome == .ok }.map(\.end).sorted()
        if let after = ok.firstIndex(where: { $0 >= switchAt }), after > 0 {
            controlGaps.append(ms(ok[after] - ok[after - 1]))
        }
    }
    // Background keys (paced, so their gaps are coarse: about keys / rate between two calls).
    let background = 0..<probeRange.lowerBound
    var backgroundMoved = 0, backgroundPredicted = 0, unexpectedMoves = 0, missedMoves = 0
    var backgroundGaps: [Double] = []
    // The new placement was in force by the end of the first RPC a runtime answered for a key that
    // moved to it: an RPC sent after that went by the new placement.
    let effectiveAt = moves.compactMap { $0?.firstNew }.min() ?? Int64.max
    var missed: [String] = []
    for index in keys.indices {
        let predicted = predictedMove[index]
        let moved = moves[index] != nil
        if background.contains(index) {
            if predicted { backgroundPredicted += 1 }
            if moved { backgroundMoved += 1; backgroundGaps.append(ms(moves[index]!.firstNew - moves[index]!.lastOld)) }
        }
        // A key that moved though the placement says it stays; one that it says moves, answered
        // before the mark, and answered by the same runtime for an RPC sent once the new placement
        // was in force.
        if pipeRange.contains(index) { continue }
        if moved && !predicted { unexpectedMoves += 1 }
        if predicted && !moved, let before = byKey[index].last(where: { $0.outcome == .ok && $0.end < mark }),
           let stale = byKey[index].first(where: { $0.outcome == .ok && $0.start > effectiveAt && $0.rt == before.rt }) {
            missedMoves += 1
            if missed.count < 10 {
                missed.append("\(keys[index]): answered by \(stale.rt) for an RPC sent \(ms(stale.start - mark)) ms after the mark")
            }
        }
    }
    var twoRuntimes: [String] = []
    for index in keys.indices where !pipeRange.contains(index) {
        if let move = moves[index], move.oldAgain > 0, twoRuntimes.count < 30 {
            twoRuntimes.append("\(keys[index]): answered by \(move.from) \(move.oldAgain) time(s) after \(move.to) had answered it (\(ms(move.firstNew - mark)) ms after the mark)")
        }
    }
    let doubleActive = keys.indices.filter { !pipeRange.contains($0) && (moves[$0]?.oldAgain ?? 0) > 0 }.count
    // Errors and timeouts: of the keys with one RPC at a time (the pipelined keys' are in their checks).
    let after = records.filter { $0.end >= mark && !pipeRange.contains($0.key) }
    let beforeMark = records.filter { $0.end < mark && !pipeRange.contains($0.key) }
    let slow = records.filter { $0.end - $0.start > Int64(o.deadlineMs) * 1_000_000 }
    var byRuntimeAfter: [String: Int] = [:]
    for r in after where r.outcome == .ok && r.end >= mark + Int64(o.afterMark * 0.5e9) { byRuntimeAfter[r.rt, default: 0] += 1 }
    var byRuntimeBefore: [String: Int] = [:]
    for r in beforeMark where r.outcome == .ok { byRuntimeBefore[r.rt, default: 0] += 1 }
    let firstError = after.filter { $0.outcome != .ok }.map(\.end).min()
    let lastError = after.filter { $0.outcome != .ok }.map(\.end).max()
    let steadyOK = beforeMark.filter { $0.outcome == .ok && $0.key < probeRange.lowerBound && $0.end >= mark - 1_000_000_000 }
    var figures: [String: Any] = [
        "keys": o.keys, "probes": probeRange.count, "controls": controlRange.count, "move_rate": o.moveRate,
        "probe_pause_ms": o.probePauseMs, "probe_us": o.probeUs, "pipeline_depth": o.pipelineDepth, "work_us": o.workUs, "after_mark_s": o.afterMark,
        "members_before": o.membersBefore, "members_after": o.membersAfter,
        "rpcs": records.count, "answered_ok": records.filter { $0.outcome == .ok }.count,
        "errors_before_mark": beforeMark.filter { $0.outcome != .ok }.count,
        "errors_after_mark": after.filter { $0.outcome == .error }.count,
        "timeouts_after_mark": after.filter { $0.outcome == .timeout }.count,
        "slow": slow.count, "deadline_ms": o.deadlineMs,
        "probes_moved": probeMoves.count, "probe_gaps_ms": probeGaps.sorted(), "control_gaps_ms": controlGaps.sorted(),
        "controls_moved": controlMoved,
        "background_predicted": backgroundPredicted, "background_moved": backgroundMoved,
        "unexpected_moves": unexpectedMoves, "missed_moves": missedMoves, "missed_detail": missed,
        "placement_in_force_ms": effectiveAt == Int64.max ? -1 : ms(effectiveAt - mark),
        "double_active": doubleActive, "double_active_detail": twoRuntimes,
        "by_runtime_before": byRuntimeBefore, "by_runtime_after": byRuntimeAfter,
        "messages": groupMessages(records + peekFailures), "peek_failures": peekFailures.count,
        "checks": counterChecks(records, keys: keys, finals: finals, mark: mark, skipping: pipeRange),
        "pipelined": pipelineChecks(byKey, keys: keys, range: pipeRange, finals: finals, mark: mark),
        "steady_rpcs_per_s": Double(steadyOK.count),  // background answers in the second before the mark
    ]
    if let v = quantileMs(probeGaps, 0.5) { figures["gap_p50_ms"] = v }
    if let v = quantileMs(probeGaps, 0.99) { figures["gap_p99_ms"] = v }
    if let v = probeGaps.max() { figures["gap_max_ms"] = v }
    if let v = quantileMs(controlGaps, 0.5) { figures["control_gap_p50_ms"] = v }
    if let v = quantileMs(controlGaps, 0.99) { figures["control_gap_p99_ms"] = v }
    if let v = quantileMs(backgroundGaps, 0.5) { figures["background_gap_p50_ms"] = v }
    if let v = quantileMs(backgroundGaps, 0.99) { figures["background_gap_p99_ms"] = v }
    if let v = quantileMs(probeSwitch, 0.5) { figures["switch_p50_ms"] = v }
    if let v = probeSwitch.max() { figures["switch_max_ms"] = v }
    if let v = quantileMs(probeMoves.map(\.firstNewRPCms), 0.5) { figures["first_new_rpc_p50_ms"] = v }
    if let v = probeMoves.map(\.firstNewRPCms).max() { figures["first_new_rpc_max_ms"] = v }
    if let firstError { figures["first_error_ms"] = ms(firstError - mark) }
    if let lastError { figures["last_error_ms"] = ms(lastError - mark) }
    let probeLatency = beforeMark.filter { $0.outcome == .ok && probeRange.contains($0.key) }.map { Double($0.end - $0.start) / 1e6 }
    if let v = quantileMs(probeLatency, 0.5) { figures["probe_rpc_p50_ms_before"] = v }
    return figures
}

/// The checks of keys with several RPCs in flight across their move. Every ok answer's effect
/// must be stored: the counters the ok answers carry must all differ (two answers with the same
/// counter: two instances added one to the same stored value, a lost update), and the final
/// counter must be at least the number of ok answers and their highest counter. Answers from the
/// runtime a key left after the new one had answered it are that runtime finishing what was
/// queued for the key before the move (both instances alive at once): counted, not a failure by
/// itself.
func pipelineChecks(_ byKey: [[WorkRecord]], keys: [String], range: Range<Int>, finals: [Int64?], mark: Int64) -> [String: Any] {
    var moved = 0, ok = 0, failed = 0, duplicates = 0, finalShort = 0, oldAfterNew = 0, overlapKeys = 0
    var details: [String] = []
    for index in range {
        let list = byKey[index]
        let answers = list.filter { $0.outcome == .ok }.sorted { $0.end < $1.end }
        ok += answers.count
        failed += list.filter { $0.outcome != .ok && $0.end >= mark }.count
        let counts = answers.map(\.count)
        let repeated = counts.count - Set(counts).count
        duplicates += repeated
        guard let before = answers.last(where: { $0.end < mark }) else { continue }
        if let first = answers.first(where: { $0.end >= mark && $0.rt != before.rt }) {
            moved += 1
            let late = answers.filter { $0.end > first.end && $0.rt == before.rt }
            oldAfterNew += late.count
            if !late.isEmpty { overlapKeys += 1 }
            if !late.isEmpty && details.count < 20 {
                details.append("\(keys[index]): \(before.rt) answered \(late.count) more time(s) after \(first.rt)'s first answer (counters \(late.map(\.count)) vs \(first.rt)'s first \(first.count))")
            }
        }
        if repeated > 0 && details.count < 20 {
            var seen: [Int64: [String]] = [:]
            for a in answers { seen[a.count, default: []].append(a.rt) }
            let twice = seen.filter { $0.value.count > 1 }.sorted { $0.key < $1.key }.prefix(5)
            details.append("\(keys[index]): LOST UPDATE: counter(s) answered twice: \(twice.map { "\($0.key) by \($0.value)" })")
        }
        if let final = finals[index], final < max(Int64(answers.count), counts.max() ?? 0) {
            finalShort += 1
            details.append("\(keys[index]): final counter \(final) below the \(answers.count) ok answers / highest answered \(counts.max() ?? 0)")
        }
    }
    return ["keys": range.count, "moved": moved, "ok": ok, "failed": failed, "duplicate_counts": duplicates,
            "final_short": finalShort, "old_after_new": oldAfterNew, "overlap_keys": overlapKeys, "details": details]
}
