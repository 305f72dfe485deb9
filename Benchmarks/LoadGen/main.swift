// The publishing / calling worker of Benchmarks/compare (our side): a WorkerClient that joins a
// host and drives the scenarios against a receiving `agentd run` serving the bench-agents plugin
// (Benchmarks/Plugins/BenchAgents) and the echo plugin (Plugins/EchoAgent). AutoGen's side
// does the same in Python (Benchmarks/compare, role autogen-driver); keep the two in step.
//
//   compare-loadgen --host HOST:PORT [--publish N] [--rpc N] [--fanout N] [--warmup N]
//                   [--stall-seconds S]
//
//   warmup   N events to bench-sink/warm and N echo RPCs (untimed), waits until all are counted
//   publish  N BenchMsg events (100-byte JSON) to topic (bench-events, run) → bench-sink/run;
//            time from the first publish to the receiving agent's last receipt (its
//            CLOCK_MONOTONIC stamp, read back with GetStats once every event is counted, or
//            once the count stops moving for --stall-seconds: then the loss is reported)
//   rpc      N sequential Echo {"text": "ping"} RPCs to echo/rpc, each timed. With --caller-plugins
//            DIR (what Benchmarks/compare passes), this process also runs an agentd runtime
//            (AgentRuntime, connected to the same host) loading DIR — the bench-caller plugin
//            (Benchmarks/Plugins/BenchCaller) — and the calls are made by agent bench-caller/run,
//            agent to agent through the host, each from the previous answer's callback: the
//            path a plugin's RPC takes. (The WorkerClient figure is then `clientrpc`.)
//            With --local-caller, bench-caller is served by the runtime under test instead (no
//            runtime starts here): Benchmarks/crash-isolation's agent-to-agent figure.
//   clientrpc  the same N RPCs from this process's WorkerClient (async/await, no runtime)
//   fanout   N BenchMsg events to topic (bench-fanout, run): ten agent types receive each one
//   hostrpc  (--host-rpc N, default 0) N sequential RPCs to an agent type nobody serves, which the
//            host answers at once with an error: the caller ↔ host leg alone, for the breakdown
//   rawrpc / rawhostrpc  (--raw-rpc N, --raw-host-rpc N, default 0) the same two RPCs sent on a
//            bare HostConnection from its poller thread (each answer sends the next request;
//            no Swift tasks, timers or continuations): what WorkerClient.send adds, by difference
//
// For Benchmarks/cluster (off by default, so that Benchmarks/compare's runs are unchanged):
//   --ready-timeout S   first wait (up to S seconds) until this host routes to what the scenarios
//            need — echo/ready answers, and a probe event to (bench-events, ready) and to
//            (bench-fanout, ready) is counted by bench-sink/ready and by each bench-fan-N/ready —
//            for when they are served through another host of a cluster (learned a moment after
//            the receiving runtime registered)
//   --failover-lanes N  the failover driver instead of the scenarios (Failover.swift): N lanes of
//            sequential Echo RPCs, continuously, until the kill time read on stdin
//            (`kill NS`, CLOCK_MONOTONIC) plus --after-kill S, and --fresh-lanes M (1) more from
//            the kill on; prints `ready` once they run, and then one JSON object (what was
//            answered, with an error, late, or not at all). Also --deadline-ms, --grace-ms,
//            --steady, --retry-pause-ms, --interval-ms (FailoverOptions)
//
// For Benchmarks/shared (Shared.swift): --shared-mode throughput|move, load on the shared agent
//   type bench-work over many keys, from several runtimes: throughput with many RPCs in flight
//   (--work-keys, --work-lanes, --work-us, --work-warmup, --work-seconds), and the keys' moves
//   when a runtime joins or leaves (--move-rate, --move-lanes, --probes, --controls,
//   --probe-pause-ms, --probe-us, --pipelined, --pipeline-depth, --pipeline-pause-ms, --members, --members-after, --move-steady, --after-mark;
//   `mark NS` on stdin). Also --work-retry-pause-ms, --work-deadline-ms, --work-timeout-ms.
//
// For the profile of the host (see the README): `compare-loadgen --serve-host POLLERS` runs an
// AgentHost with that many poller threads in this process instead (prints `listening on ...`
// and serves until killed), so that the host's threading can be varied without a code change.
//
// Prints one JSON object on stdout; progress goes to stderr.
import AgentCore
import AgentHost
@_spi(Benchmarks) import AgentRuntime
import GRPCTransport
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging

struct Options {
    var host = ""
    var publish = 20_000
    var rpc = 2_000
    var fanout = 5_000
    var warmup = 500
    var hostRPC = 0
    var rawRPC = 0
    var rawHostRPC = 0
    var serveHost: Int? = nil
    var callerPlugins: String? = nil
    /// bench-caller is served by the runtime under test already (Benchmarks/crash-isolation):
    /// the `rpc` figure is its calls, agent to agent inside that runtime, and no runtime starts here.
    var localCaller = false
    var stallSeconds = 5.0
    var readyTimeout = 0.0
    var failover = FailoverOptions()
    var shared = SharedOptions()

    init(_ arguments: [String]) {
        var iterator = arguments.makeIterator()
        func value(_ name: String) -> String {
            guard let value = iterator.next() else { fail("\(name) needs a value") }
            return value
        }
        func seconds(_ name: String) -> Double {
            guard let number = Double(value(name)), number >= 0 else { fail("\(name) needs a number of seconds") }
            return number
        }
        func count(_ name: String) -> Int {
            guard let number = Int(value(name)), number >= 0 else { fail("\(name) needs a whole number") }
            return number
        }
        while let argument = iterator.next() {
            switch argument {
            case "--host": host = value(argument)
            case "--publish": publish = count(argument)
            case "--rpc": rpc = count(argument)
            case "--fanout": fanout = count(argument)
            case "--warmup": warmup = count(argument)
            case "--host-rpc": hostRPC = count(argument)
            case "--raw-rpc": rawRPC = count(argument)
            case "--raw-host-rpc": rawHostRPC = count(argument)
            case "--serve-host": serveHost = count(argument)
            case "--caller-plugins": callerPlugins = value(argument)
            case "--local-caller": localCaller = true
            case "--ready-timeout": readyTimeout = seconds(argument)
            case "--failover-lanes": failover.lanes = count(argument)
            case "--fresh-lanes": failover.freshLanes = count(argument)
            case "--deadline-ms": failover.deadlineMs = count(argument)
            case "--grace-ms": failover.graceMs = count(argument)
            case "--after-kill": failover.afterKill = seconds(argument)
            case "--steady": failover.steady = seconds(argument)
            case "--retry-pause-ms": failover.retryPauseMs = count(argument)
            case "--interval-ms": failover.intervalMs = count(argument)
            case "--shared-mode":
                shared.mode = value(argument)
                if shared.mode != "throughput" && shared.mode != "move" { fail("--shared-mode takes throughput or move") }
            case "--work-keys": shared.keys = max(1, count(argument))
            case "--work-lanes": shared.lanes = max(1, count(argument))
            case "--work-us": shared.workUs = count(argument)
            case "--work-warmup": shared.warmupSeconds = seconds(argument)
            case "--work-seconds": shared.measureSeconds = seconds(argument)
            case "--move-rate": shared.moveRate = seconds(argument)
            case "--move-lanes": shared.moveLanes = max(1, count(argument))
            case "--probes": shared.probes = count(argument)
            case "--controls": shared.controls = count(argument)
            case "--pipelined": shared.pipelined = count(argument)
            case "--pipeline-depth": shared.pipelineDepth = max(1, count(argument))
            case "--pipeline-pause-ms": shared.pipelinePauseMs = count(argument)
            case "--probe-pause-ms": shared.probePauseMs = count(argument)
            case "--probe-us": shared.probeUs = count(argument)
            case "--work-retry-pause-ms": shared.retryPauseMs = count(argument)
            case "--members": shared.membersBefore = value(argument).split(separator: ",").map(String.init)
            case "--members-after": shared.membersAfter = value(argument).split(separator: ",").map(String.init)
            case "--move-steady": shared.steady = seconds(argument)
            case "--after-mark": shared.afterMark = seconds(argument)
            case "--work-deadline-ms": shared.deadlineMs = count(argument)
            case "--work-timeout-ms": shared.timeoutMs = max(1, count(argument))
            case "--stall-seconds":
                guard let seconds = Double(value(argument)), seconds > 0 else { fail("--stall-seconds needs a number") }
                stallSeconds = seconds
            default: fail("unknown argument \(argument)")
            }
        }
        if host.isEmpty && serveHost == nil { fail("--host HOST:PORT is required") }
    }
}

func fail(_ text: String) -> Never {
    FileHandle.standardError.write(Data("compare-loadgen: \(text)\n".utf8))
    exit(2)
}

func note(_ text: String) {
    FileHandle.standardError.write(Data("compare-loadgen: \(text)\n".utf8))
}

/// CLOCK_MONOTONIC, the clock the receiving agents stamp with (system-wide on Linux).
func monotonicNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// `{"text": "xxx…"}`: exactly 100 bytes, as AutoGen's json.dumps writes BenchMsg(text=88 × "x").
let benchPayload = Array("{\"text\": \"\(String(repeating: "x", count: 88))\"}".utf8)
precondition(benchPayload.count == 100)
let pingPayload = Array("{\"text\": \"ping\"}".utf8)
let fanTypes = (0..<10).map { "bench-fan-\($0)" }

struct Stats {
    var count: Int
    var lastNs: Int64
}

/// The figures of a latency run (`sorted`: µs, ascending): calls, p50, p99, mean, max.
func latencyFigures(_ sorted: [Double]) -> [String: Any] {
    func quantile(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] }
    return [
        "calls": sorted.count, "p50_us": quantile(0.5), "p99_us": quantile(0.99),
        "mean_us": sorted.reduce(0, +) / Double(sorted.count), "max_us": sorted.last!,
    ]
}

func describe(_ figures: [String: Any]) -> String {
    "p50 \(figures["p50_us"]!) µs, p99 \(figures["p99_us"]!) µs"
}

func stats(_ client: WorkerClient, _ agent: AgentID) async throws -> Stats {
    let response = try await client.send(Array("{}".utf8), messageType: "GetStats", to: agent)
    guard response.messageType == "BenchStats",
          let object = try JSONSerialization.jsonObject(with: Data(response.payload)) as? [String: Any],
          let count = (object["count"] as? NSNumber)?.intValue,
          let last = (object["last_ns"] as? NSNumber)?.int64Value
    else { fail("unexpected GetStats answer from \(agent): \(response.messageType) \(String(decoding: response.payload, as: UTF8.self))") }
    return Stats(count: count, lastNs: last)
}

/// Polls GetStats on `agents` until their counts add up to `expected`, or stop moving for
/// `stall` seconds. Returns the summed count and the latest last-receipt stamp.
func waitForCounts(_ client: WorkerClient, _ agents: [AgentID], expected: Int, stall: Double) async throws
    -> (count: Int, lastNs: Int64) {
    var seen = -1
    var progressAt = monotonicNs()
    while true {
        var count = 0
        var last: Int64 = 0
        for agent in agents {
            let s = try await stats(client, agent)
            count += s.count
            last = max(last, s.lastNs)
        }
        if count >= expected { return (count, last) }
        let now = monotonicNs()
        if count != seen {
            seen = count
            progressAt = now
        } else if Double(now - progressAt) / 1e9 > stall {
            return (count, last)
        }
        try await Task.sleep(for: .milliseconds(2))
    }
}

/// A memory figure of this process from /proc/self/status (VmRSS, VmHWM), in MiB.
func ownStatusMiB(_ field: String) -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        return Double(line.split(separator: " ", omittingEmptySubsequences: true)[1]).map { $0 / 1024 } ?? 0
    }
    return 0
}

/// Resets this process's peak resident memory (VmHWM) to its current size (Linux:
/// /proc/self/clear_refs, "5") and returns that size: the base of a burst's growth.
func resetPeakRSSMiB() -> Double {
    let fd = open("/proc/self/clear_refs", O_WRONLY)
    if fd >= 0 {
        _ = write(fd, "5", 1)
        close(fd)
    }
    return ownStatusMiB("VmRSS")
}

func publishRun(_ client: WorkerClient, topic: TopicID, count: Int, receivers: [AgentID], stall: Double) async throws
    -> [String: Any] {
    let before = resetPeakRSSMiB()
    let start = monotonicNs()
    for _ in 0..<count {
        // Waits while the client's bounded outbound queue is full (back-pressure), never drops.
        try await client.publish(benchPayload, messageType: "BenchMsg", to: topic, waitingUpTo: .seconds(30))
    }
    let published = monotonicNs()
    let expected = count * receivers.count
    let (received, lastNs) = try await waitForCounts(client, receivers, expected: expected, stall: stall)
    let seconds = Double(lastNs - start) / 1e9
    let peak = ownStatusMiB("VmHWM")
    return [
        "published": count, "expected": expected, "received": received, "lost": max(0, expected - received),
        "seconds": seconds, "publish_loop_seconds": Double(published - start) / 1e9,
        "per_s": Double(received) / seconds,
        "rss_before_mib": before, "rss_peak_mib": peak, "growth_mib": max(0, peak - before),
    ]
}

// MARK: Raw RPCs on a bare HostConnection

/// The runtime's own request bytes (no sender, as a `WorkerClient` sends them).
func rawRequest(id: Int, target: AgentID, messageType: String, payload: [UInt8]) -> [UInt8] {
    payload.withUnsafeBytes {
        OutboundCodec.request(
            id: "r\(id)", senderType: nil, senderKey: nil, targetType: target.type, targetKey: target.key,
            messageType: messageType, contentType: "application/json", payload: $0)
    }
}

/// Sends the next request from the poller thread that delivered the previous answer.
final class RawCaller: @unchecked Sendable {
    // @unchecked Sendable: `samples`, `sentAt` and `next` are touched by one request at a time
    // (the poller thread, or the starting thread before the first send); `done` orders them.
    let target: AgentID
    let total: Int
    var connection: HostConnection?
    var samples: [Double] = []
    var sentAt: Int64 = 0
    var next = 0
    let done = DispatchSemaphore(value: 0)

    init(target: AgentID, total: Int) {
        self.target = target
        self.total = total
        samples.reserveCapacity(total)
    }

    func sendNext() {
        next += 1
        let bytes = rawRequest(id: next, target: target, messageType: "Echo", payload: pingPayload)
        sentAt = monotonicNs()
        _ = connection!.send(MessageBuffer(bytes))
    }

    func received(_ message: MessageBuffer) {
        let now = monotonicNs()
        guard message.withUnsafeBytes({ $0.first == 0x12 }) else { return }  // Message.response
        samples.append(Double(now - sentAt) / 1000)
        if samples.count == total { done.signal() } else { sendNext() }
    }
}

func rawRPCs(address: String, target: AgentID, count: Int, logger: Logger) async throws -> [String: Any] {
    let caller = RawCaller(target: target, total: count)
    let connection = HostConnection(
        address: address, clientID: UUID().uuidString.lowercased(), maxMessageBytes: 4 << 20, logger: logger)
    caller.connection = connection
    try connection.open(.init(onMessage: { caller.received($0) }))
    caller.sendNext()
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        DispatchQueue.global().async {
            caller.done.wait()
            continuation.resume()
        }
    }
    await connection.close()
    return latencyFigures(caller.samples.sorted())
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
var logger = Logger(label: "compare-loadgen")
logger.logLevel = .warning

if let pollers = options.serveHost {
    let host = try AgentHost(
        configuration: .init(listen: "127.0.0.1:0", pollerThreads: max(1, pollers)), logger: logger)
    FileHandle.standardOutput.write(Data("listening on \(host.address)\n".utf8))
    while true { try await Task.sleep(for: .seconds(3600)) }
}
let client = try WorkerClient(address: options.host, logger: logger)
var result: [String: Any] = [:]

if options.readyTimeout > 0 {
    let waited = try await awaitRoutes(client, options: options)
    note("routes ready after \(String(format: "%.0f", waited * 1000)) ms")
}
if let mode = options.shared.mode {
    let waited = try await awaitWorkRoute(client, timeout: max(options.readyTimeout, 30))
    note("bench-work routed after \(String(format: "%.0f", waited * 1000)) ms")
    let figures = mode == "move"
        ? try await runSharedMove(client, options: options.shared)
        : try await runSharedThroughput(client, options: options.shared)
    let json = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
    FileHandle.standardOutput.write(json + Data("\n".utf8))
    await client.close()
    exit(0)
}
if options.failover.lanes > 0 {
    let figures = try await runFailover(client, options: options.failover)
    let json = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
    FileHandle.standardOutput.write(json + Data("\n".utf8))
    await client.close()
    exit(0)
}

// Warm-up: connections, agent instances, code paths (untimed).
if options.warmup > 0 {
    let warm = TopicID(type: "bench-events", source: "warm")
    for _ in 0..<options.warmup {
        try await client.publish(benchPayload, messageType: "BenchMsg", to: warm, waitingUpTo: .seconds(30))
    }
    for _ in 0..<options.warmup { _ = try await client.send(pingPayload, messageType: "Echo", to: AgentID(type: "echo", key: "rpc")) }
    let (count, _) = try await waitForCounts(
        client, [AgentID(type: "bench-sink", key: "warm")], expected: options.warmup, stall: options.stallSeconds)
    if count != options.warmup { note("warm-up: \(count) of \(options.warmup) events counted") }
}

if options.publish > 0 {
    let figures = try await publishRun(
        client, topic: TopicID(type: "bench-events", source: "run"), count: options.publish,
        receivers: [AgentID(type: "bench-sink", key: "run")], stall: options.stallSeconds)
    result["publish"] = figures
    note("publish: \(figures)")
}

/// RPCs made by agent bench-caller/run of the embedded runtime: (sorted samples in µs, failures).
func callerRPCs(_ client: WorkerClient, count: Int) async throws -> ([Double], Int) {
    let request = #"{"count": \#(count), "to_type": "echo", "to_key": "rpc"}"#
    let response = try await client.send(
        Array(request.utf8), messageType: "RunCalls", to: AgentID(type: "bench-caller", key: "run"))
    guard response.messageType == "CallStats",
          let object = try JSONSerialization.jsonObject(with: Data(response.payload)) as? [String: Any],
          let samples = object["samples_ns"] as? [NSNumber], let failed = (object["failed"] as? NSNumber)?.intValue,
          samples.count == count
    else { fail("unexpected RunCalls answer: \(response.messageType) \(String(decoding: response.payload.prefix(200), as: UTF8.self))") }
    return (samples.map { $0.doubleValue / 1000 }.sorted(), failed)
}

var callerRuntime: AgentRuntime? = nil
var callerUsed = false
if options.callerPlugins != nil || options.localCaller, options.rpc > 0 {
    if let directory = options.callerPlugins {
        let runtime = try AgentRuntime(
            configuration: .init(hostAddress: options.host, workers: 2, pluginDirectory: directory, watchPlugins: false),
            logger: logger)
        try await runtime.start()
        guard runtime.plugins.contains(where: { $0.name == "bench-caller" }) else { fail("bench-caller did not load from \(directory)") }
        callerRuntime = runtime
    }
    callerUsed = true
    if options.warmup > 0 { _ = try await callerRPCs(client, count: options.warmup) }
    let (samples, failed) = try await callerRPCs(client, count: options.rpc)
    if failed > 0 { fail("\(failed) of \(options.rpc) RPCs from bench-caller failed") }
    var figures = latencyFigures(samples)
    figures["caller"] = "bench-caller plugin"
    result["rpc"] = figures
    note("rpc (bench-caller agent): \(describe(figures))")
}

if options.rpc > 0 {
    var samples: [Double] = []
    samples.reserveCapacity(options.rpc)
    let target = AgentID(type: "echo", key: "rpc")
    for _ in 0..<options.rpc {
        let start = monotonicNs()
        let answer = try await client.send(pingPayload, messageType: "Echo", to: target)
        samples.append(Double(monotonicNs() - start) / 1000)
        if answer.messageType != "Echo" { fail("unexpected echo answer \(answer.messageType)") }
    }
    let figures = latencyFigures(samples.sorted())
    result[callerUsed ? "clientrpc" : "rpc"] = figures
    note("rpc (WorkerClient): \(describe(figures))")
}

if options.hostRPC > 0 {
    var samples: [Double] = []
    samples.reserveCapacity(options.hostRPC)
    let target = AgentID(type: "bench-nobody", key: "rpc")
    for _ in 0..<options.hostRPC {
        let start = monotonicNs()
        do {
            _ = try await client.send(pingPayload, messageType: "Echo", to: target)
            fail("an RPC to \(target) was answered")
        } catch {}
        samples.append(Double(monotonicNs() - start) / 1000)
    }
    let figures = latencyFigures(samples.sorted())
    result["hostrpc"] = figures
    note("host-only rpc: \(describe(figures))")
}

if options.rawRPC > 0 {
    let figures = try await rawRPCs(
        address: options.host, target: AgentID(type: "echo", key: "raw"), count: options.rawRPC, logger: logger)
    result["rawrpc"] = figures
    note("raw rpc (poller-driven): \(figures)")
}

if options.rawHostRPC > 0 {
    let figures = try await rawRPCs(
        address: options.host, target: AgentID(type: "bench-nobody", key: "raw"), count: options.rawHostRPC,
        logger: logger)
    result["rawhostrpc"] = figures
    note("raw host-only rpc (poller-driven): \(figures)")
}

if options.fanout > 0 {
    let figures = try await publishRun(
        client, topic: TopicID(type: "bench-fanout", source: "run"), count: options.fanout,
        receivers: fanTypes.map { AgentID(type: $0, key: "run") }, stall: options.stallSeconds)
    result["fanout"] = figures
    note("fanout: \(figures)")
}

await client.close()
await callerRuntime?.shutdown()
let json = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
print(String(decoding: json, as: UTF8.self))
