import AgentCore
@_spi(Benchmarks) import AgentRuntime
import AgentState
import Foundation
import GRPCTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: Agents that keep their state: the store's cost (section 4)
//
// Agent type bench-state (libBenchAgents.so) is a counter with snapshot/restore that calls
// `state_changed` for every event and every `Echo` RPC, so that with a state store each of them
// is checkpointed (the RPC's answer held until the write's group commit). The same plugin runs
// in runtimes that differ only in their store: none ("off"), SQLite with `sync = normal`, SQLite
// with `sync = full`. All three are alive at once and the measurements alternate between them
// in blocks (the machine is noisy: a burst of noise hits every mode alike), the order rotating
// from one round to the next.
//
//   rpc         agent bench-caller/run (libBenchCaller.so, in the same runtime) sends sequential
//               Echo RPCs to bench-state/rpc, each timed from send() to its answer callback:
//               caller → embedded host → runtime → agent (checkpoint) → host → caller, over
//               loopback gRPC both ways.
//   events      encoded CloudEvents to topic (bench-state-events, KEY) handed to
//               `deliverFromHost` (the path a message read from the host takes; no network),
//               to one agent and to --state-agents agents; first delivery → the plugin's last
//               receipt (CLOCK_MONOTONIC, read back with GetStats, which changes nothing).
//   activation  the first message to an agent whose state is stored (after a restart of the
//               runtime on the same file: create + restore from the store) against the second
//               (resident); also to a new agent (nothing stored), and without a store.
//   store       SQLiteStateStore alone (the runtime's store, its public API): one put of one
//               write, of a batch, a get — the floor under the runtime's checkpoint.
//
// Commits and writes are counted through SQLite's commit hook (SQLiteCommits.swift).

enum StoreMode: String, CaseIterable {
    case off, normal, full

    /// The row naming the mode in tables.
    var row: String { self == .off ? "store off" : "sync = \(rawValue)" }
    /// The control row: no store, the answer sent from a plugin thread (EchoDeferred).
    static let deferredRow = "off, answered from another thread"

    var durability: SQLiteStateStore.Durability? {
        switch self {
        case .off: nil
        case .normal: .normal
        case .full: .full
        }
    }
}

// MARK: Figures

struct LatencyBlock {
    var p50: Double
    var p99: Double
    init(_ sorted: [UInt64]) {
        p50 = quantileUs(sorted, 0.5)
        p99 = quantileUs(sorted, 0.99)
    }
}

struct EventRun {
    var agents: Int
    var events: Int
    var counted: Int
    var seconds: Double
    var commits: CommitSummary?
    var eventsPerSecond: Double { Double(events) / seconds }
    var lost: Int { max(0, events - counted) }
    var duplicated: Int { max(0, counted - events) }
}

struct StateFigures {
    var folder = ""
    var fileSystem = ""
    var rpcCalls: [StoreMode: Int] = [:]
    /// Per mode, one entry per round (a block of sequential calls).
    var rpc: [StoreMode: [LatencyBlock]] = [:]
    /// Every sample of every round, per mode (sorted).
    var rpcPooled: [StoreMode: [UInt64]] = [:]
    var rpcCommits: [StoreMode: CommitSummary] = [:]
    var rpcFailed = 0
    /// Per round: store-on p50 / store-off p50 in the same round.
    var rpcRatioNormal: [Double] = []
    var rpcRatioFull: [Double] = []
    var rpcRatioFullOverNormal: [Double] = []
    /// By row (``timelineRows``), per round: median µs of each step of an RPC
    /// (``rpcTimeline(_:calls:messageType:)``).
    var rpcTimeline: [String: [[String: Double]]] = [:]
    /// By mode's row, per round: median µs of each step of one agent's events.
    var eventTimeline: [String: [[String: Double]]] = [:]

    /// By agents (1, N), by mode: one entry per round.
    var events: [Int: [StoreMode: [EventRun]]] = [:]

    var activationKeys = 0
    /// By case name: per round, the sorted samples.
    var activation: [String: [[UInt64]]] = [:]
    var activationCommits: CommitSummary?
    /// By case name, per round: p50 µs of send → handler entered (the request, activation
    /// included) and handler entered → answer at the caller.
    var activationSplit: [String: [(request: Double, answer: Double)]] = [:]

    /// SQLiteStateStore alone: µs per call, by case name, per round.
    var store: [String: [Double]] = [:]

    var seconds = 0.0
    /// Cores other processes kept busy meanwhile (all CPU busy time minus this process's).
    var backgroundCores = 0.0
}

/// CPU time of this process and of its children that have ended, in nanoseconds.
func processCPUNs(includingChildren: Bool) -> UInt64 {
    var usage = rusage()
    getrusage(RUSAGE_CHILDREN.rawValue, &usage)
    func ns(_ t: timeval) -> UInt64 { UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_usec) &* 1000 }
    return processCPUNs() &+ (includingChildren ? ns(usage.ru_utime) &+ ns(usage.ru_stime) : 0)
}

/// CPU seconds all CPUs spent running processes since boot (/proc/stat: user, nice, system).
func machineBusySeconds() -> Double {
    guard let line = readProcFile("/proc/stat")?.split(separator: "\n").first else { return 0 }
    let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard fields.count >= 3 else { return 0 }
    return (fields[0] + fields[1] + fields[2]) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Section 4: all of the above, in one runtime per mode.
func runState(_ options: Options) async throws -> StateFigures {
    var figures = StateFigures()
    let began = nowNs(), busyBefore = machineBusySeconds(), ownBefore = processCPUNs(includingChildren: true)
    let folder = try stateFolder(options.stateDirectory)
    figures.folder = folder.path
    figures.fileSystem = folder.fileSystem
    defer { try? FileManager.default.removeItem(atPath: folder.path) }
    let rounds = options.runs
    let events = options.stateEvents
    let mailboxLimit = max(10_000, events + 1_000)

    // RPC latency: one runtime per mode, each in a process of its own (StateServer.swift), all
    // alive at once; each round's calls in slices of a tenth, the modes taking turns slice by
    // slice (the order rotating each round), so that a burst of noise from other processes
    // hits every mode alike.
    let calls: [StoreMode: Int] = [.off: options.stateRPCCalls, .normal: options.stateRPCCalls,
                                   .full: max(100, options.stateRPCCalls / 4)]
    figures.rpcCalls = calls
    var servers: [StoreMode: StateServer] = [:]
    for mode in StoreMode.allCases {
        servers[mode] = try StateServer(mode: mode, folder: folder.path, stateBytes: options.stateBytes)
        _ = try await servers[mode]!.callerRun(count: max(200, calls[mode]! / 4), key: "rpc")
    }
    var pooled: [StoreMode: [UInt64]] = [:]
    for round in 0..<rounds {
        let order = rotated(StoreMode.allCases, by: round)
        var p50: [StoreMode: Double] = [:]
        var roundSamples: [StoreMode: [UInt64]] = [:]
        let slices = 10
        for _ in 0..<slices {
            for mode in order {
                let run = try await servers[mode]!.callerRun(count: max(1, calls[mode]! / slices), key: "rpc")
                figures.rpcFailed += run.failed
                roundSamples[mode, default: []] += run.samples
            }
        }
        for mode in order {
            let samples = roundSamples[mode]!.sorted()
            let block = LatencyBlock(samples)
            figures.rpc[mode, default: []].append(block)
            pooled[mode, default: []] += samples
            p50[mode] = block.p50
        }
        // Where the time goes: a shorter block of each mode with every step stamped; and, as a
        // control, the store-off runtime answering from a thread of the plugin's own.
        for mode in order {
            let server = servers[mode]!
            figures.rpcTimeline[mode.row, default: []].append(try await rpcTimeline(server, calls: mode == .full ? 200 : 500))
            if mode == .off {
                if round == 0 { _ = try await server.callerRun(count: 300, key: "rpc", messageType: "EchoDeferred") }
                figures.rpcTimeline[StoreMode.deferredRow, default: []].append(
                    try await rpcTimeline(server, calls: 500, messageType: "EchoDeferred"))
            }
        }
        figures.rpcRatioNormal.append(p50[.normal]! / p50[.off]!)
        figures.rpcRatioFull.append(p50[.full]! / p50[.off]!)
        figures.rpcRatioFullOverNormal.append(p50[.full]! / p50[.normal]!)
        note(String(format: "state rpc round %d (%@): p50 off %.1f µs, normal %.1f µs, full %.1f µs; normal/off %.2f, full/off %.2f",
                    round + 1, order.map(\.rawValue).joined(separator: " → "), p50[.off]!, p50[.normal]!, p50[.full]!,
                    figures.rpcRatioNormal.last!, figures.rpcRatioFull.last!))
    }
    figures.rpcPooled = pooled.mapValues { $0.sorted() }
    for mode in StoreMode.allCases {
        if let commits = await servers[mode]!.stop(), mode != .off { figures.rpcCommits[mode] = commits }
    }

    // Events in this process, one runtime at a time (fresh for each run, the modes' order
    // rotating each round), and where one agent's event time goes.
    func fresh(_ mode: StoreMode) async throws -> StateRuntime {
        try await StateRuntime(mode: mode, storePath: "\(folder.path)/run-\(UUID().uuidString.prefix(8)).db",
                               mailboxLimit: mailboxLimit, stateBytes: options.stateBytes)
    }
    let shapes = [1, max(2, options.stateAgents)]
    for agents in shapes {
        for round in 0..<rounds {
            for mode in rotated(StoreMode.allCases, by: round) {
                let count = events
                let keys = (0..<agents).map { "e\(agents)-r\(round)-k\($0)" }
                let bench = try await fresh(mode)
                _ = try await stateEventRun(bench, keys: ["warm"], events: 200)
                let run = try await stateEventRun(bench, keys: keys, events: count)
                await bench.stop()
                figures.events[agents, default: [:]][mode, default: []].append(run)
                note(String(format: "state events round %d, %d agent(s), store %@: %d fed, %d counted in %.3f s: %.0f events/s; %@",
                            round + 1, agents, mode.rawValue, run.events, run.counted, run.seconds, run.eventsPerSecond,
                            run.commits?.text ?? "no store"))
            }
        }
    }
    for round in 0..<rounds {
        for mode in rotated(StoreMode.allCases, by: round) {
            let bench = try await fresh(mode)
            _ = try await stateEventRun(bench, keys: ["warm"], events: 200)
            figures.eventTimeline[mode.row, default: []].append(
                try await eventTimeline(bench, key: "timeline", events: 2_000))
            await bench.stop()
        }
    }

    // Activation: restarts on one store file.
    figures.activationKeys = options.stateActivationKeys
    for round in 0..<rounds {
        try await activationRound(options, folder: folder.path, round: round, into: &figures)
    }

    // The store alone.
    for round in 0..<rounds {
        for (name, value) in try storeAlone(folder: folder.path, round: round) {
            figures.store[name, default: []].append(value)
        }
    }
    figures.seconds = Double(nowNs() - began) / 1e9
    let own = Double(processCPUNs(includingChildren: true) - ownBefore) / 1e9
    figures.backgroundCores = max(0, (machineBusySeconds() - busyBefore - own) / figures.seconds)
    return figures
}

func rotated<T>(_ items: [T], by count: Int) -> [T] {
    let shift = count % items.count
    return Array(items[shift...] + items[..<shift])
}

/// Feeds `events` events round-robin over `keys` through `deliverFromHost` and reads the
/// counts back (as section 1b does).
func stateEventRun(_ bench: StateRuntime, keys: [String], events: Int) async throws -> EventRun {
    for key in keys {
        let before = try await bench.stats(key)
        if before.count != 0 { throw RuntimeError("bench-state/\(key) had counted \(before.count) events already") }
    }
    var encoder = BenchEventEncoder(keys: keys, topicType: "bench-state-events")
    var messages: [MessageBuffer] = []
    messages.reserveCapacity(events)
    for index in 0..<events { messages.append(encoder.next(key: index % keys.count)) }
    let mark = bench.commits?.commits ?? 0
    let before = bench.runtime.agentStatistics
    let start = nowNs()
    for message in messages { bench.runtime.deliverFromHost(message) }
    var counted = 0, last: UInt64 = 0, previous = -1, progressAt = nowNs()
    while true {
        counted = 0
        last = 0
        for key in keys {
            let s = try await bench.stats(key)
            counted += s.count
            last = max(last, s.last)
        }
        if counted >= events { break }
        let now = nowNs()
        if counted != previous {
            previous = counted
            progressAt = now
        } else if now - progressAt > 5_000_000_000 {
            break
        }
        try await Task.sleep(for: .milliseconds(2))
    }
    messages.removeAll()
    // Let the last checkpoints commit before their batches are read.
    try await Task.sleep(for: .milliseconds(20))
    // The runtime's own counts (its CheckpointWriter's), the largest batch from the commit hook.
    let after = bench.runtime.agentStatistics
    let largest = bench.commits.map { CommitSummary($0.batches(since: mark)).largest } ?? 0
    return EventRun(agents: keys.count, events: events, counted: counted, seconds: Double(last > start ? last - start : 0) / 1e9,
                    commits: bench.storePath == nil ? nil : CommitSummary(
                        commits: after.commits - before.commits, writes: after.checkpoints - before.checkpoints, empty: 0,
                        largest: largest))
}
