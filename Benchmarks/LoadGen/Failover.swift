// Benchmarks/cluster's additions to compare-loadgen (see main.swift's header): waiting until a
// host of a cluster routes to agents served through another host, and the failover driver.
import AgentCore
import AgentRuntime
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// `--failover-lanes N` and its settings.
struct FailoverOptions {
    /// Lanes of sequential RPCs, back to back from the start (0: no failover run).
    var lanes = 0
    /// Lanes that start when the kill time is read (callers arriving after the failure: their
    /// first RPC is not one the dead host had in hand).
    var freshLanes = 1
    /// An RPC answered later than this counts as not answered.
    var deadlineMs = 2_000
    /// How long an RPC waits for its answer before the driver gives up on it (WorkerClient's
    /// timeout; at least the deadline): between --deadline-ms and this, a late answer is still
    /// recorded (when and what), so that an RPC the cluster answers only late is told from one
    /// it never answers.
    var graceMs = 8_000
    /// Seconds the lanes go on after the kill.
    var afterKill = 4.0
    /// Seconds the lanes run before `ready` is printed.
    var steady = 1.0
    /// A lane whose RPC failed waits this long before its next one (a client retrying).
    var retryPauseMs = 10
    /// A lane waits this long after each answered RPC (0: back to back).
    var intervalMs = 0
}

private let echoPing = Array("{\"text\": \"ping\"}".utf8)
private let probePayload = Array("{\"text\": \"\(String(repeating: "x", count: 88))\"}".utf8)

/// Waits until the driver's host routes to the agents the scenarios use (they may be served
/// through another host of a cluster, which this host learns of a moment after they were
/// registered there). Returns the seconds waited.
func awaitRoutes(_ client: WorkerClient, options: Options) async throws -> Double {
    let began = monotonicNs()
    let deadline = began + Int64(options.readyTimeout * 1e9)
    var needEcho = options.rpc > 0 || options.warmup > 0 || options.failover.lanes > 0
    var pending: [(topic: String, agent: AgentID)] = []
    if options.failover.lanes == 0 {
        if options.publish > 0 || options.warmup > 0 {
            pending.append(("bench-events", AgentID(type: "bench-sink", key: "ready")))
        }
        if options.fanout > 0 {
            for type in (0..<10).map({ "bench-fan-\($0)" }) {
                pending.append(("bench-fanout", AgentID(type: type, key: "ready")))
            }
        }
    }
    var lastError = ""
    while true {
        if needEcho {
            do {
                _ = try await client.send(
                    echoPing, messageType: "Echo", to: AgentID(type: "echo", key: "ready"), timeout: .seconds(2))
                needEcho = false
            } catch {
                lastError = "\(error)"
            }
        }
        for topic in Set(pending.map(\.topic)).sorted() {
            try await client.publish(
                probePayload, messageType: "BenchMsg", to: TopicID(type: topic, source: "ready"), waitingUpTo: .seconds(5))
        }
        var still: [(topic: String, agent: AgentID)] = []
        for entry in pending {
            do {
                if try await stats(client, entry.agent).count == 0 { still.append(entry) }
            } catch {
                lastError = "\(error)"
                still.append(entry)
            }
        }
        pending = still
        if !needEcho && pending.isEmpty { return Double(monotonicNs() - began) / 1e9 }
        if monotonicNs() > deadline {
            fail("the host does not route to \(needEcho ? "echo " : "")\(pending.map { "\($0.agent)" }.joined(separator: " ")) within \(options.readyTimeout) s (last error: \(lastError))")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

enum RPCOutcome: String, Sendable {
    case ok, error, timeout
}

struct RPCRecord: Sendable {
    var lane: Int
    var start: Int64
    var end: Int64
    var outcome: RPCOutcome
    var message: String?
}

/// What the lanes and the stdin reader share.
final class FailoverControl: Sendable {
    let stop = Atomic<Bool>(false)
    /// The kill's CLOCK_MONOTONIC time from stdin; 0 until it is read, -1 if stdin ended first.
    let killNs = Atomic<Int64>(0)
}

/// One lane: sequential Echo RPCs to its own agent until told to stop.
func failoverLane(
    _ client: WorkerClient, lane: Int, options: FailoverOptions, control: FailoverControl
) async -> [RPCRecord] {
    var records: [RPCRecord] = []
    records.reserveCapacity(100_000)
    let target = AgentID(type: "echo", key: lane < options.lanes ? "lane-\(lane)" : "fresh-\(lane - options.lanes)")
    while !control.stop.load(ordering: .relaxed) {
        let start = monotonicNs()
        var outcome = RPCOutcome.ok
        var message: String?
        do {
            let answer = try await client.send(
                echoPing, messageType: "Echo", to: target, timeout: .milliseconds(max(options.graceMs, options.deadlineMs)))
            if answer.messageType != "Echo" || !String(decoding: answer.payload, as: UTF8.self).contains("ping") {
                outcome = .error
                message = "unexpected answer \(answer.messageType) \(String(decoding: answer.payload.prefix(100), as: UTF8.self))"
            }
        } catch {
            let text = "\(error)"
            // WorkerClient's own deadline ("no answer from AGENT within DURATION"): nothing came back.
            outcome = text.hasPrefix("no answer from") ? .timeout : .error
            message = text
        }
        records.append(RPCRecord(lane: lane, start: start, end: monotonicNs(), outcome: outcome, message: message))
        if outcome != .ok {
            try? await Task.sleep(for: .milliseconds(options.retryPauseMs))
        } else if options.intervalMs > 0 {
            try? await Task.sleep(for: .milliseconds(options.intervalMs))
        }
    }
    return records
}

/// The failover driver: lanes of sequential RPCs before, across and after the kill of the host
/// that the serving runtime is connected to; the kill time comes on stdin (`kill NS`).
func runFailover(_ client: WorkerClient, options: FailoverOptions) async throws -> [String: Any] {
    let control = FailoverControl()
    let reader = Thread {
        while let line = readLine() {
            let words = line.split(separator: " ")
            if words.count == 2, words[0] == "kill", let ns = Int64(words[1]) {
                control.killNs.store(ns, ordering: .sequentiallyConsistent)
            }
        }
        _ = control.killNs.compareExchange(expected: 0, desired: -1, ordering: .sequentiallyConsistent)
    }
    reader.start()
    var lanes = (0..<options.lanes).map { lane in
        Task { await failoverLane(client, lane: lane, options: options, control: control) }
    }
    try await Task.sleep(for: .seconds(options.steady))
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    let waitLimit = monotonicNs() + 600_000_000_000
    while control.killNs.load(ordering: .sequentiallyConsistent) == 0 && monotonicNs() < waitLimit {
        try await Task.sleep(for: .milliseconds(5))
    }
    let kill = control.killNs.load(ordering: .sequentiallyConsistent)
    if kill > 0 {
        lanes += (options.lanes..<options.lanes + options.freshLanes).map { lane in
            Task { await failoverLane(client, lane: lane, options: options, control: control) }
        }
        let until = kill + Int64(options.afterKill * 1e9)
        while monotonicNs() < until { try await Task.sleep(for: .milliseconds(5)) }
    }
    control.stop.store(true, ordering: .relaxed)
    var records: [RPCRecord] = []
    for lane in lanes { records += await lane.value }
    guard kill > 0 else { fail("no `kill NS` line on stdin") }
    return failoverFigures(records, kill: kill, options: options)
}

func failoverFigures(_ records: [RPCRecord], kill: Int64, options: FailoverOptions) -> [String: Any] {
    let deadline = Int64(options.deadlineMs) * 1_000_000
    func ms(_ ns: Int64) -> Double { Double(ns) / 1e6 }
    func duration(_ r: RPCRecord) -> Int64 { r.end - r.start }
    let onTime = records.filter { duration($0) <= deadline }
    let firstOK = records.filter { $0.outcome == .ok && $0.start >= kill }.map(\.end).min()
    // Each lane's first answer after the kill (an RPC of that lane sent after it), the latest of them.
    var laneFirst: [Int: Int64] = [:]
    for r in records where r.outcome == .ok && r.start >= kill { laneFirst[r.lane] = min(laneFirst[r.lane] ?? .max, r.end) }
    let allLanes = laneFirst.count == options.lanes + options.freshLanes ? laneFirst.values.max() : nil
    let freshFirst = laneFirst.filter { $0.key >= options.lanes }.values.min()
    let windowEnd = firstOK ?? .max
    let windowErrors = onTime.filter { $0.outcome == .error && $0.end >= kill && $0.end <= windowEnd }.count
    let errorsAfterKill = onTime.filter { $0.outcome == .error && $0.end >= kill }.count
    let errorsBeforeKill = records.filter { $0.outcome != .ok && $0.end < kill }.count
    let firstError = records.filter { $0.outcome != .ok && $0.end >= kill }.map(\.end).min()
    let late = records.filter { duration($0) > deadline }
    let inFlight = records.filter { $0.start < kill && $0.end >= kill }
    var messages: [String: Int] = [:]
    for r in records where r.outcome != .ok {
        var text = r.message ?? "?"
        text = text.replacingOccurrences(of: #"(lane|fresh)-\d+"#, with: "$1-N", options: .regularExpression)
        text = text.replacingOccurrences(of: #"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"#, with: "ID", options: .regularExpression)
        messages[String(text.prefix(300)), default: 0] += 1
    }
    func p50(_ values: [Int64]) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        return Double(sorted[sorted.count / 2]) / 1000
    }
    let before = records.filter { $0.outcome == .ok && $0.end < kill }.map(duration)
    let after = records.filter { $0.outcome == .ok && $0.start >= (allLanes ?? windowEnd) }.map(duration)
    var figures: [String: Any] = [
        "lanes": options.lanes, "deadline_ms": options.deadlineMs, "grace_ms": options.graceMs,
        "retry_pause_ms": options.retryPauseMs, "interval_ms": options.intervalMs, "after_kill_s": options.afterKill,
        "rpcs": records.count, "answered_ok": records.filter { $0.outcome == .ok }.count,
        "errors_before_kill": errorsBeforeKill,
        "window_errors": windowErrors, "errors_after_kill": errorsAfterKill,
        "no_answer": late.count,
        "late_ok": late.filter { $0.outcome == .ok }.count,
        "late_error": late.filter { $0.outcome == .error }.count,
        "never": late.filter { $0.outcome == .timeout }.count,
        "in_flight_at_kill": inFlight.count,
        "in_flight_ok": inFlight.filter { $0.outcome == .ok }.count,
        "late_detail": late.prefix(50).map { r -> [String: Any] in
            ["lane": r.lane, "sent_after_kill_ms": ms(r.start - kill), "waited_ms": ms(duration(r)),
             "outcome": r.outcome.rawValue, "message": String((r.message ?? "").prefix(300))]
        },
        "messages": messages,
    ]
    if let firstOK { figures["first_ok_ms"] = ms(firstOK - kill) }
    if let allLanes { figures["all_lanes_ok_ms"] = ms(allLanes - kill) }
    if let freshFirst { figures["fresh_ok_ms"] = ms(freshFirst - kill) }
    figures["fresh_lanes"] = options.freshLanes
    if let firstError { figures["first_error_ms"] = ms(firstError - kill) }
    if let v = p50(before) { figures["p50_before_us"] = v }
    if let v = p50(after) { figures["p50_after_us"] = v }
    return figures
}
