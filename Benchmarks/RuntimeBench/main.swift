// The runtime's costs, measured in one process with an embedded host (release build; the
// plugin libraries must be built in the same build folder: `swift build -c release`):
//
//   1. dispatch: a `Get` RPC round trip WorkerClient → host → runtime → C plugin → back, as
//      ratios against a raw GRPCTransport ping-pong measured in the same run, both alone in
//      the process (transport-bench's floor) and beside the idle runtime; and the event
//      throughput into the plugin, with every event's count checked;
//   1b. in-process dispatch (--only inprocess): the per-event cost of dispatch into a C plugin
//      without the network — pre-encoded CloudEvents fed through AgentRuntime.deliverFromHost
//      (the path a message read from the host takes) to one agent, then to --keys agents;
//   2. hot reload: swap latency (rename → first answer by the new version; with the watcher
//      and through rescan()), the pause an agent sees during a swap, and that events
//      published during swaps are counted exactly once;
//   3. memory: the RSS each retired version of a Swift plugin leaves mapped (each measurement
//      in a fresh child process, this executable with --memory-child);
//   4. state (--only state; about a minute, two with --runs 5): agents that keep their state,
//      with a SQLite store (sync = normal, sync = full) against none, alternating: RPC latency
//      to a stateful agent (each mode's runtime in a process of its own, this executable with
//      --state-server) and where its time goes, events/s into stateful agents and where one
//      agent's event time goes, activation latency (first message to an agent whose state is
//      stored), writes per group commit, and the store alone (State.swift; --state-dir puts
//      the store files elsewhere than $TMPDIR: on tmpfs sync = full costs nothing);
//   5. state memory (--only state-memory, not in the default set: 40–70 s per bound):
//      VmRSS after --state-keys distinct agents (a million) were each addressed once, with
//      max_resident bounding the resident ones, against VmRSS after the first thousand (each
//      bound in a fresh child process, this executable with --state-memory-child).
//
// Prints a table, then one `NAME=value` line per figure; progress and per-swap details go to
// standard error. Exits with 3 if something was lost, duplicated, failed or hung (listed
// under "findings").
//
//   runtime-bench [--runs N] [--rpc-calls N] [--events N] [--keys N] [--swaps N]
//                 [--swap-gap-ms N] [--reload-rate EVENTS_PER_S] [--swift-reloads N]
//                 [--inprocess-events N] [--state-rpc-calls N] [--state-events N] [--state-agents N]
//                 [--state-activation-keys N] [--state-bytes N] [--state-dir DIR] [--state-keys N]
//                 [--max-resident N[,N...]] [--state-window N]
//                 [--only dispatch|inprocess|reload|memory|state|state-memory]...
//
// gRPC's C core reads GRPC_POLL_STRATEGY (epoll1 by default on Linux); the header says which
// one ran, since it moves the figures of section 1.
import Foundation

struct Options {
    var runs = 3
    var rpcCalls = 5_000
    var events = 50_000
    var keys = 8
    var swaps = 10
    var swapGapMs = 300
    var reloadRate = 5_000.0
    var swiftReloads = 8
    var inprocessEvents = 200_000
    var stateRPCCalls = 2_000
    var stateEvents = 20_000
    var stateAgents = 64
    var stateActivationKeys = 1_000
    var stateBytes = 0
    var stateDirectory: String?
    var stateKeys = 1_000_000
    var maxResident = [100_000, 10_000]
    var stateWindow = 2_000
    var sections: Set<String> = []
    /// Internal: run the memory measurement once and print its raw figures.
    var memoryChild = false
    /// Internal: run the state memory measurement once (the first --max-resident).
    var stateMemoryChild = false
    /// Internal: serve a stateful runtime with this store mode until standard input closes.
    var stateServer: StoreMode?

    init(_ arguments: [String]) {
        var iterator = arguments.makeIterator()
        func number(_ name: String) -> Int {
            guard let value = iterator.next().flatMap({ Int($0) }), value > 0 else { fail("\(name) needs a positive number") }
            return value
        }
        while let argument = iterator.next() {
            switch argument {
            case "--runs": runs = number(argument)
            case "--rpc-calls": rpcCalls = number(argument)
            case "--events": events = number(argument)
            case "--keys": keys = number(argument)
            case "--swaps": swaps = number(argument)
            case "--swap-gap-ms": swapGapMs = number(argument)
            case "--reload-rate": reloadRate = Double(number(argument))
            case "--swift-reloads": swiftReloads = number(argument)
            case "--inprocess-events": inprocessEvents = number(argument)
            case "--memory-child": memoryChild = true
            case "--state-rpc-calls": stateRPCCalls = number(argument)
            case "--state-events": stateEvents = number(argument)
            case "--state-agents": stateAgents = number(argument)
            case "--state-activation-keys": stateActivationKeys = number(argument)
            case "--state-bytes":
                guard let value = iterator.next().flatMap({ Int($0) }), value >= 0 else { fail("--state-bytes needs a number") }
                stateBytes = value
            case "--state-dir":
                guard let value = iterator.next() else { fail("--state-dir needs a folder") }
                stateDirectory = value
            case "--state-keys": stateKeys = number(argument)
            case "--max-resident":
                let values = iterator.next()?.split(separator: ",").compactMap { Int($0) } ?? []
                guard !values.isEmpty, values.allSatisfy({ $0 > 0 }) else { fail("--max-resident needs N or N,N,...") }
                maxResident = values
            case "--state-window": stateWindow = number(argument)
            case "--state-memory-child": stateMemoryChild = true
            case "--state-server":
                guard let mode = iterator.next().flatMap(StoreMode.init(rawValue:)) else { fail("--state-server takes off, normal or full") }
                stateServer = mode
            case "--only":
                let known = ["dispatch", "inprocess", "reload", "memory", "state", "state-memory"]
                guard let section = iterator.next(), known.contains(section) else {
                    fail("--only takes dispatch, inprocess, reload, memory, state or state-memory")
                }
                sections.insert(section)
            default: fail("unknown argument \(argument)")
            }
        }
        if sections.isEmpty { sections = ["dispatch", "inprocess", "reload", "memory", "state"] }
    }
}

func f1(_ value: Double) -> String { String(format: "%.1f", value) }
func f2(_ value: Double) -> String { String(format: "%.2f", value) }
func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}
func lpad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
if options.memoryChild {
    print(try await runSwiftMemory(reloads: options.swiftReloads).lines, terminator: "")
    exit(0)
}
if let mode = options.stateServer {
    guard let folder = options.stateDirectory else { fail("--state-server needs --state-dir") }
    try await serveState(mode: mode, folder: folder, stateBytes: options.stateBytes)
    exit(0)
}
if options.stateMemoryChild {
    print(try await runStateMemory(keys: options.stateKeys, maxResident: options.maxResident[0], window: options.stateWindow,
                                   stateBytes: options.stateBytes, directory: options.stateDirectory).lines, terminator: "")
    exit(0)
}
var machine: [(String, String)] = []
@MainActor func figure(_ name: String, _ value: String) { machine.append((name, value)) }
var findings: [String] = []

let pollStrategy = ProcessInfo.processInfo.environment["GRPC_POLL_STRATEGY"] ?? "default (epoll1)"
let loadAverage = readProcFile("/proc/loadavg")?.split(separator: " ").prefix(3).joined(separator: " ") ?? "?"
print("runtime-bench: \(ProcessInfo.processInfo.activeProcessorCount) CPUs, load average \(loadAverage), GRPC_POLL_STRATEGY \(pollStrategy)")
print("plugins from \(Products.directory)")
// The memory figures come from fresh processes, started first while the machine is quietest.
let memoryRuns = options.sections.contains("memory")
    ? (0..<options.runs).compactMap { _ in runSwiftMemoryInChild(reloads: options.swiftReloads) } : []

// MARK: 1. Dispatch

if options.sections.contains("dispatch") {
    let d = try await runDispatch(options)
    let rpc50 = median(d.rpcP50), rpc99 = median(d.rpcP99)
    let raw50 = median(d.rawP50), raw99 = median(d.rawP99)
    let in50 = median(d.inprocP50), in99 = median(d.inprocP99)
    let aw50 = median(d.awaitedP50), aw99 = median(d.awaitedP99)
    print("")
    print("1. Dispatch into a C plugin in process (agent versioned/rpc, RPC Get; 100-byte raw messages)")
    print("   \(options.rpcCalls) sequential calls per figure and run, \(options.runs) runs interleaved; medians of the runs' percentiles")
    print("   " + pad("figure", 50) + lpad("p50 µs", 9) + lpad("p99 µs", 9))
    print("   " + pad("RPC WorkerClient → host → runtime → plugin → back", 50) + lpad(f1(rpc50), 9) + lpad(f1(rpc99), 9))
    print("   " + pad("raw ping-pong alone in the process (transport-bench)", 50) + lpad(f1(raw50), 9) + lpad(f1(raw99), 9))
    print("   " + pad("raw ping-pong beside the idle runtime + host", 50) + lpad(f1(in50), 9) + lpad(f1(in99), 9))
    print("   " + pad("  the same, awaited from a task", 50) + lpad(f1(aw50), 9) + lpad(f1(aw99), 9))
    print("   " + pad("ratio RPC / raw ping-pong alone", 50) + lpad(f2(rpc50 / raw50), 9) + lpad(f2(rpc99 / raw99), 9))
    print("   " + pad("ratio RPC / raw ping-pong beside the runtime", 50) + lpad(f2(rpc50 / in50), 9) + lpad(f2(rpc99 / in99), 9))
    figure("rpc_p50_us", f1(rpc50)); figure("rpc_p99_us", f1(rpc99))
    figure("raw_pingpong_p50_us", f1(raw50)); figure("raw_pingpong_p99_us", f1(raw99))
    figure("raw_pingpong_beside_runtime_p50_us", f1(in50)); figure("raw_pingpong_beside_runtime_p99_us", f1(in99))
    figure("awaited_pingpong_beside_runtime_p50_us", f1(aw50)); figure("awaited_pingpong_beside_runtime_p99_us", f1(aw99))
    figure("rpc_over_raw_p50", f2(rpc50 / raw50)); figure("rpc_over_raw_p99", f2(rpc99 / raw99))
    figure("rpc_over_raw_beside_runtime_p50", f2(rpc50 / in50)); figure("rpc_over_raw_beside_runtime_p99", f2(rpc99 / in99))

    let rates = d.throughput.map { Double($0.events) / $0.seconds }
    let publishRates = d.throughput.map { Double($0.events) / $0.publishSeconds }
    let lost = d.throughput.map(\.lost).reduce(0, +)
    let duplicated = d.throughput.map(\.duplicated).reduce(0, +)
    print("")
    print("   events: \(options.events) published by one WorkerClient to versioned-events over \(options.keys) keys, \(options.runs) runs")
    let drains = d.throughput.map { ($0.seconds - $0.publishSeconds) * 1000 }
    print("   " + pad("throughput, first publish → all counted (msgs/s)", 50) + lpad(String(format: "%.0f", median(rates)), 9)
          + "   runs: " + rates.map { String(format: "%.0f", $0) }.joined(separator: ", "))
    print("   " + pad("the client's publish loop alone (msgs/s)", 50) + lpad(String(format: "%.0f", median(publishRates)), 9))
    print("   " + pad("last publish → all counted (ms)", 50) + lpad(f1(median(drains)), 9)
          + "   (small: the runtime keeps up and the figure is the client's)")
    print("   " + pad("lost / duplicated (all runs)", 50) + lpad("\(lost) / \(duplicated)", 9)
          + "   counted: " + d.throughput.map { "\($0.counted)/\($0.events)" }.joined(separator: ", "))
    figure("events_per_s", String(format: "%.0f", median(rates)))
    figure("events_publish_loop_per_s", String(format: "%.0f", median(publishRates)))
    figure("events_drain_ms", f1(median(drains)))
    figure("events_lost", "\(lost)"); figure("events_duplicated", "\(duplicated)")
    if lost + duplicated > 0 {
        findings.append("event throughput: \(lost) events lost, \(duplicated) duplicated (counted \(d.throughput.map { "\($0.counted)/\($0.events)" }))")
    }
}

// MARK: 1b. In-process dispatch

if options.sections.contains("inprocess") {
    let d = try await runInProcess(options)
    let parallel = d.parallel.first?.agents ?? options.keys
    func row(_ label: String, _ runs: [InProcessRun]) {
        let ns = runs.map(\.nsPerEvent)
        print("   " + pad(label, 34) + lpad(String(format: "%.0f", median(ns)), 10)
              + lpad(String(format: "%.0f", median(runs.map(\.eventsPerSecond))), 12)
              + lpad(String(format: "%.0f", median(runs.map { $0.feedSeconds * 1e9 / Double($0.events) })), 10)
              + lpad(String(format: "%.0f", median(runs.map { $0.cpuSeconds * 1e9 / Double($0.events) })), 10)
              + "   runs: " + ns.map { String(format: "%.0f", $0) }.joined(separator: ", "))
    }
    print("")
    print("1b. In-process dispatch into a C plugin (no network): \(d.events) pre-encoded CloudEvents per run (100-byte JSON")
    print("   BenchMsg to topic bench-events, the bytes the host forwards) handed to AgentRuntime.deliverFromHost, the path")
    print("   a message read from the host takes; agent bench-sink (libBenchAgents.so) counts each. Timed: first delivery →")
    print("   the plugin's last receipt (CLOCK_MONOTONIC); \(options.runs) runs, medians; every event's count checked.")
    print("   Included: protobuf-c decode, routing (subscriptions, agent lookup), the mailbox, the hand-off to a worker")
    print("   thread (\(d.workers) handler threads + 1), the plugin's handler. Not included: the network (gRPC read, HTTP/2, the host).")
    print("   The feeding thread is this program's, not the pool's reading thread: it decodes and routes while workers run")
    print("   the handlers (a pipeline, on \(ProcessInfo.processInfo.activeProcessorCount) CPUs), and an event that finds its agent idle wakes a worker (futex) —")
    print("   a hand-off the reading thread does not make (it runs the handler itself). Mailbox limit raised to \(d.mailboxLimit)")
    print("   so that the burst is not refused.")
    print("   " + pad("", 34) + lpad("ns/event", 10) + lpad("events/s", 12) + lpad("feed ns", 10) + lpad("CPU ns", 10))
    row("1 agent (strictly sequential)", d.single)
    row("\(parallel) agents (in parallel)", d.parallel)
    print("   " + pad("decode + routing alone", 34) + lpad(String(format: "%.0f", median(d.unroutedNs)), 10)
          + "   (a topic no agent subscribes to: decoded, matched, dropped; runs: "
          + d.unroutedNs.map { String(format: "%.0f", $0) }.joined(separator: ", ") + ")")
    print("   (feed ns: the feeding loop alone — decode, route, queue — per event; CPU ns: the whole process's CPU per")
    print("   event, all threads, until the counts were read back)")
    let all = d.single + d.parallel
    let lost = all.map(\.lost).reduce(0, +), duplicated = all.map(\.duplicated).reduce(0, +)
    print("   " + pad("lost / duplicated (all runs)", 34) + lpad("\(lost) / \(duplicated)", 10)
          + "   counted: " + all.map { "\($0.counted)/\($0.events)" }.joined(separator: ", "))
    figure("dispatch_events", "\(d.events)")
    figure("dispatch_ns_per_event_1agent", String(format: "%.0f", median(d.single.map(\.nsPerEvent))))
    figure("dispatch_events_per_s_1agent", String(format: "%.0f", median(d.single.map(\.eventsPerSecond))))
    figure("dispatch_parallel_agents", "\(parallel)")
    figure("dispatch_ns_per_event_parallel", String(format: "%.0f", median(d.parallel.map(\.nsPerEvent))))
    figure("dispatch_events_per_s_parallel", String(format: "%.0f", median(d.parallel.map(\.eventsPerSecond))))
    figure("dispatch_feed_ns_per_event_1agent", String(format: "%.0f", median(d.single.map { $0.feedSeconds * 1e9 / Double($0.events) })))
    figure("dispatch_decode_route_ns_per_event", String(format: "%.0f", median(d.unroutedNs)))
    figure("dispatch_cpu_ns_per_event_1agent", String(format: "%.0f", median(d.single.map { $0.cpuSeconds * 1e9 / Double($0.events) })))
    figure("dispatch_lost", "\(lost)"); figure("dispatch_duplicated", "\(duplicated)")
    if lost + duplicated > 0 {
        findings.append("in-process dispatch: \(lost) events lost, \(duplicated) duplicated (counted \(all.map { "\($0.counted)/\($0.events)" }))")
    }
}

// MARK: 2. Hot reload

if options.sections.contains("reload") {
    let watched = try await reloadPhase(name: "watcher", options, watch: true, publishRate: nil)
    let rescanned = try await reloadPhase(name: "rescan()", options, watch: false, publishRate: nil)
    let loaded = try await reloadPhase(name: "watcher + events", options, watch: true, publishRate: options.reloadRate)
    print("")
    print("2. Hot reload of versioned.so (C), \(options.swaps) swaps alternating v2/v1, \(options.swapGapMs) ms apart;")
    print("   a probe client sends back-to-back Get RPCs to versioned/probe throughout")
    print("   watcher quiet period: \(Int(watcherQuietPeriodMs)) ms (a rescan starts that long after the last change)")
    print("   " + pad("swap latency: rename → first answer by new version", 52) + lpad("median", 8) + lpad("min", 8) + lpad("max", 8) + lpad("−quiet", 8) + "   (ms)")
    for phase in [watched, rescanned, loaded] {
        let l = phase.analysis.latencyMs
        let quiet = phase.name.hasPrefix("watcher") ? watcherQuietPeriodMs : 0
        let label = phase.name == "rescan()" ? "  via AgentRuntime.rescan() (SIGHUP path, no watcher)" :
            phase.name == "watcher" ? "  watcher (inotify + quiet period)" : "  watcher, \(Int(options.reloadRate)) events/s published meanwhile"
        print("   " + pad(label, 52) + lpad(f1(median(l)), 8) + lpad(f1(l.min() ?? .nan), 8) + lpad(f1(l.max() ?? .nan), 8)
              + lpad(quiet > 0 ? f1(median(l) - quiet) : "-", 8))
    }
    print("   " + pad("  \"plugin replaced\" logged (watcher), median", 52) + lpad(f1(median(watched.analysis.loggedMs)), 8))
    print("")
    print("   pause seen by the probe: Get latency in swap windows (rescan start → new version answering and")
    print("   logged, +\(swapWindowTailNs / 1_000_000) ms; the quiet period is outside) vs. outside them")
    print("   " + pad("", 40) + lpad("RPCs", 8) + lpad("p50 µs", 9) + lpad("p99 µs", 9) + lpad("max µs", 10) + lpad("swap max med", 14))
    for phase in [watched, rescanned, loaded] {
        let a = phase.analysis
        print("   " + pad("  \(phase.name): during swaps", 40) + lpad("\(a.during.count)", 8) + lpad(f1(quantileUs(a.during, 0.5)), 9)
              + lpad(f1(quantileUs(a.during, 0.99)), 9) + lpad(f1(Double(a.during.last ?? 0) / 1000), 10)
              + lpad(f2(median(a.perSwapMaxMs)) + " ms", 14))
        print("   " + pad("  \(phase.name): outside", 40) + lpad("\(a.outside.count)", 8) + lpad(f1(quantileUs(a.outside, 0.5)), 9)
              + lpad(f1(quantileUs(a.outside, 0.99)), 9) + lpad(f1(Double(a.outside.last ?? 0) / 1000), 10))
    }
    print("")
    print("   events published during the swaps (\(Int(options.reloadRate))/s over \(options.keys) keys) vs. final counts:")
    print("   sent \(loaded.eventsSent), counted \(loaded.eventsCounted), lost \(loaded.lost), duplicated \(loaded.duplicated)"
          + (loaded.finalVersionOK ? "" : " (some key answered with an unexpected version)"))

    figure("watcher_quiet_period_ms", "\(Int(watcherQuietPeriodMs))")
    figure("swap_latency_median_ms", f1(median(watched.analysis.latencyMs)))
    figure("swap_latency_min_ms", f1(watched.analysis.latencyMs.min() ?? .nan))
    figure("swap_latency_max_ms", f1(watched.analysis.latencyMs.max() ?? .nan))
    figure("swap_latency_beyond_quiet_ms", f1(median(watched.analysis.latencyMs) - watcherQuietPeriodMs))
    figure("swap_latency_rescan_median_ms", f1(median(rescanned.analysis.latencyMs)))
    figure("swap_latency_under_events_median_ms", f1(median(loaded.analysis.latencyMs)))
    figure("swap_logged_median_ms", f1(median(watched.analysis.loggedMs)))
    for (prefix, phase) in [("swap", watched), ("swap_rescan", rescanned), ("swap_events", loaded)] {
        let a = phase.analysis
        figure("\(prefix)_rpc_during_p99_us", f1(quantileUs(a.during, 0.99)))
        figure("\(prefix)_rpc_during_max_us", f1(Double(a.during.last ?? 0) / 1000))
        figure("\(prefix)_rpc_outside_p99_us", f1(quantileUs(a.outside, 0.99)))
        figure("\(prefix)_rpc_outside_max_us", f1(Double(a.outside.last ?? 0) / 1000))
        figure("\(prefix)_pause_median_ms", f2(median(a.perSwapMaxMs)))
    }
    figure("reload_events_sent", "\(loaded.eventsSent)")
    figure("reload_events_counted", "\(loaded.eventsCounted)")
    figure("reload_events_lost", "\(loaded.lost)")
    figure("reload_events_duplicated", "\(loaded.duplicated)")
    for phase in [watched, rescanned, loaded] {
        if let hang = phase.hang { findings.append("\(phase.name): \(hang)") }
        if !phase.failures.isEmpty {
            findings.append("\(phase.name): \(phase.failures.count) failed calls, first: \(phase.failures.prefix(3))")
        }
        if phase.analysis.failedRPCs > 0 { findings.append("\(phase.name): \(phase.analysis.failedRPCs) probe RPCs failed") }
    }
    if loaded.lost + loaded.duplicated > 0 || !loaded.finalVersionOK {
        findings.append("events during swaps: sent \(loaded.sent.sorted { $0.key < $1.key }), counted \(loaded.counted.sorted { $0.key < $1.key })")
    }
}

// MARK: 3. Swift plugin memory

if options.sections.contains("memory") {
    if memoryRuns.isEmpty { findings.append("Swift reload memory: no measurement completed") }
    let perVersion = memoryRuns.map { $0.perSwiftVersion / mib }
    let mappedPerVersion = memoryRuns.map { $0.mappedPerSwiftVersion / mib }
    let perC = memoryRuns.map { $0.perCReload / mib }
    let first = memoryRuns.first
    func list(_ values: [Double]) -> String { values.map(f2).joined(separator: ", ") }
    print("")
    print("3. Reloading the Swift plugin libGreeterAgent.so \(options.swiftReloads) times (same image + appended bytes; rescan() each")
    print("   time; \(memoryRuns.count) fresh processes, medians)")
    if let first {
        print("   " + pad("VmRSS before / after (first process)", 50) + String(format: "%.1f / %.1f MiB", Double(first.rssBefore) / mib, Double(first.rssAfter) / mib))
        print("   " + pad("greeter images mapped before / after", 50) + "\(first.imagesBefore) / \(first.imagesAfter)")
    }
    print("   " + pad("VmRSS growth per retired Swift version", 50) + String(format: "%.2f MiB", median(perVersion)) + "   runs: \(list(perVersion))")
    print("   " + pad("  of which the image's own resident pages", 50) + String(format: "%.2f MiB", median(mappedPerVersion)) + "   runs: \(list(mappedPerVersion))")
    print("   " + pad("control: VmRSS growth per C plugin reload", 50) + String(format: "%.2f MiB", median(perC)) + "   runs: \(list(perC))"
          + "   (versioned images mapped after: \(first?.versionedImagesAfterC ?? 0))")
    figure("swift_reloads", "\(options.swiftReloads)")
    if let first {
        figure("swift_rss_before_mib", f1(Double(first.rssBefore) / mib))
        figure("swift_rss_after_mib", f1(Double(first.rssAfter) / mib))
        figure("swift_images_mapped_after", "\(first.imagesAfter)")
    }
    figure("swift_mib_per_retired_version", f2(median(perVersion)))
    figure("swift_image_resident_mib_per_version", f2(median(mappedPerVersion)))
    figure("c_mib_per_reload", f2(median(perC)))
    for m in memoryRuns {
        if m.replacedLogged != m.reloads { findings.append("Swift reloads: \(m.replacedLogged) of \(m.reloads) logged \"plugin replaced\"") }
        if !m.badReplies.isEmpty { findings.append("Swift reloads: \(m.badReplies.count) bad Greeting replies (see standard error)") }
        if m.imagesAfter != m.imagesBefore + m.reloads {
            findings.append("Swift reloads: expected \(m.imagesBefore + m.reloads) greeter images mapped, found \(m.imagesAfter)")
        }
    }
}

// MARK: 4. Agents' state

if options.sections.contains("state") {
    let s = try await runState(options)
    printState(s, options)
}

// MARK: 5. Memory with a million agents addressed

if options.sections.contains("state-memory") {
    var runs: [StateMemoryFigures] = []
    for bound in options.maxResident {
        if let run = runStateMemoryInChild(keys: options.stateKeys, maxResident: bound, window: options.stateWindow,
                                          stateBytes: options.stateBytes, directory: options.stateDirectory) {
            runs.append(run)
        } else {
            findings.append("state memory with max_resident \(bound): no measurement completed")
        }
    }
    printStateMemory(runs, options)
}

print("")
if findings.isEmpty {
    print("findings: none (no message lost, duplicated or unanswered; no hang)")
} else {
    print("findings:")
    for finding in findings { print("  - \(finding)") }
}
figure("findings", "\(findings.count)")
print("")
for (name, value) in machine { print("\(name)=\(value)") }
exit(findings.isEmpty ? 0 : 3)
