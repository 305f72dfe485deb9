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

/// A runtime with an embedded host serving libBenchAgents.so and libBenchCaller.so, with or
/// without a state store.
final class StateRuntime: BenchStateAgents {
    let runtime: AgentRuntime
    let client: WorkerClient
    let mode: StoreMode
    let pluginDirectory: String
    let storePath: String?
    /// The store's connection, counted (nil without a store).
    let commits: CommitCounter?

    init(mode: StoreMode, storePath: String?, maxResident: Int = 100_000, mailboxLimit: Int = 10_000,
         stateBytes: Int = 0, log: LogStore = LogStore()) async throws {
        self.mode = mode
        pluginDirectory = NSTemporaryDirectory() + "runtime-bench-state-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: pluginDirectory, withIntermediateDirectories: true)
        for product in ["BenchAgents", "BenchCaller"] {
            try FileManager.default.copyItem(atPath: Products.library(product), toPath: "\(pluginDirectory)/lib\(product).so")
        }
        self.storePath = mode == .off ? nil : storePath
        SQLiteCommits.install()
        runtime = try AgentRuntime(
            configuration: .init(
                embeddedHost: .init(listen: "127.0.0.1:0"), rpcTimeout: .seconds(60), pluginDirectory: pluginDirectory,
                watchPlugins: false, mailboxLimit: mailboxLimit,
                pluginSettings: ["bench-agents": ["state_bytes": "\(stateBytes)"]],
                stateStorePath: self.storePath, stateDurability: mode.durability ?? .normal,
                maxResidentAgents: maxResident),
            logger: log.logger())
        try await runtime.start()
        guard let address = runtime.hostAddress else { fail("the runtime has no host address") }
        client = try WorkerClient(address: address)
        commits = self.storePath.flatMap { SQLiteCommits.counter(for: $0) }
        if self.storePath != nil && commits == nil { note("no commit hook on \(self.storePath!): commits are not counted") }
    }

    func stop() async {
        await client.close()
        await runtime.shutdown()
        try? FileManager.default.removeItem(atPath: pluginDirectory)
    }
}

/// Where a timeline's store stamps come from (nil: no store).
protocol TimelineSource {
    var mode: StoreMode { get }
    func startTimeline()
    func stopTimeline() -> CommitCounter.Timeline?
}

extension StateRuntime: TimelineSource {
    func startTimeline() { commits?.startTimeline() }
    func stopTimeline() -> CommitCounter.Timeline? { commits?.stopTimeline() }
}

/// The RPCs the bench makes to a runtime serving libBenchAgents.so and libBenchCaller.so, in
/// this process (``StateRuntime``) or in another (``StateServer``).
protocol BenchStateAgents {
    var client: WorkerClient { get }
}

extension BenchStateAgents {
    /// RPCs sent by agent bench-caller/run, one after the other: `count` calls of
    /// `messageType` to bench-state/`key` (or, with `keyCount`, to keys `key`-0 … in turn).
    /// With `alternateKey`, every odd call goes to bench-state/`alternateKey` instead.
    func callerRun(count: Int, key: String, keyCount: Int = 0, messageType: String = "Echo",
                   stamps: Bool = false, alternateKey: String? = nil) async throws -> CallerRun {
        let alternate = alternateKey.map { #", "alternate_key": "\#($0)""# } ?? ""
        let request = #"{"count": \#(count), "to_type": "bench-state", "to_key": "\#(key)", "key_count": \#(keyCount), "message_type": "\#(messageType)", "stamps": \#(stamps ? 1 : 0)\#(alternate)}"#
        let response = try await client.send(
            Array(request.utf8), messageType: "RunCalls", to: AgentID(type: "bench-caller", key: "run"), timeout: .seconds(300))
        guard response.messageType == "CallStats",
              let object = try JSONSerialization.jsonObject(with: Data(response.payload)) as? [String: Any],
              let samples = object["samples_ns"] as? [NSNumber], let failed = (object["failed"] as? NSNumber)?.intValue,
              samples.count == count
        else { fail("unexpected RunCalls answer: \(response.messageType) \(String(decoding: response.payload.prefix(200), as: UTF8.self))") }
        let sent = (object["sent_ns"] as? [NSNumber])?.map(\.uint64Value)
        return CallerRun(samples: samples.map(\.uint64Value), sent: sent, failed: failed)
    }

    /// The process's heap (glibc's mallinfo2, read by the plugin): bytes in use, free in the
    /// arenas.
    func heap() async throws -> (used: Int, free: Int) {
        let answer = try await client.send(emptyJSON, messageType: "Heap", to: AgentID(type: "bench-state", key: "totals"))
        guard let used = jsonInteger(answer.payload, "used"), let free = jsonInteger(answer.payload, "free")
        else { throw RuntimeError("unexpected Heap answer: \(String(decoding: answer.payload, as: UTF8.self))") }
        return (used, free)
    }

    /// When bench-state's handlers were entered since the previous call (kind E event, C Echo,
    /// G GetStats), in order of entry.
    func stamps() async throws -> [(ns: UInt64, kind: UInt8)] {
        let answer = try await client.send(emptyJSON, messageType: "Stamps", to: AgentID(type: "bench-state", key: "stamps"))
        guard let object = try JSONSerialization.jsonObject(with: Data(answer.payload)) as? [String: Any],
              let stamps = object["stamps_ns"] as? [NSNumber], let kinds = object["kinds"] as? String, kinds.utf8.count == stamps.count
        else { throw RuntimeError("unexpected Stamps answer: \(String(decoding: answer.payload.prefix(200), as: UTF8.self))") }
        return zip(stamps, kinds.utf8).map { ($0.uint64Value, $1) }
    }

    /// bench-state/`key`'s count and the CLOCK_MONOTONIC times of its first and last event.
    func stats(_ key: String) async throws -> (count: Int, first: UInt64, last: UInt64) {
        let answer = try await client.send(emptyJSON, messageType: "GetStats", to: AgentID(type: "bench-state", key: key))
        guard let count = jsonInteger(answer.payload, "count"), let first = jsonInteger(answer.payload, "first_ns"),
              let last = jsonInteger(answer.payload, "last_ns")
        else { throw RuntimeError("unexpected GetStats answer: \(String(decoding: answer.payload, as: UTF8.self))") }
        return (count, UInt64(max(0, first)), UInt64(max(0, last)))
    }

    /// What every bench-state agent of the process did: events and Echos handled, instances
    /// created, restored and destroyed.
    func totals() async throws -> (handled: Int, created: Int, restored: Int, destroyed: Int) {
        let answer = try await client.send(emptyJSON, messageType: "Totals", to: AgentID(type: "bench-state", key: "totals"))
        guard let handled = jsonInteger(answer.payload, "handled"), let created = jsonInteger(answer.payload, "created"),
              let restored = jsonInteger(answer.payload, "restored"), let destroyed = jsonInteger(answer.payload, "destroyed")
        else { throw RuntimeError("unexpected Totals answer: \(String(decoding: answer.payload, as: UTF8.self))") }
        return (handled, created, restored, destroyed)
    }
}

/// What bench-caller's RunCalls answered: each call's latency in order, and when it was sent.
struct CallerRun {
    var samples: [UInt64]
    var sent: [UInt64]?
    var failed: Int
    var sorted: [UInt64] { samples.sorted() }
}

/// The folder the state stores are written in, and its file system (`tmpfs` would make
/// `sync = full` free).
func stateFolder(_ base: String?) throws -> (path: String, fileSystem: String) {
    let path = (base ?? NSTemporaryDirectory()) + "/runtime-bench-stores-\(UUID().uuidString.prefix(8).lowercased())"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    // The file system of the longest mount point that holds the folder (/proc/self/mounts).
    let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    var best = ("", "?")
    for line in (readProcFile("/proc/self/mounts") ?? "").split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard fields.count >= 3 else { continue }
        let mountPoint = String(fields[1])
        let inside = mountPoint == "/" || resolved == mountPoint || resolved.hasPrefix(mountPoint + "/")
        if inside && mountPoint.count >= best.0.count { best = (mountPoint, String(fields[2])) }
    }
    let fileSystem = best.1 == "tmpfs" ? "tmpfs — WARNING: fsync costs nothing there, sync = full is not measured" : "\(best.1) on \(best.0)"
    return (path, fileSystem)
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

/// One block of sequential Echo RPCs with every step stamped (CLOCK_MONOTONIC, one clock for
/// the caller plugin, the agent's plugin and SQLite's hooks), matched call by call (each call
/// is sent after the previous answer, and with a store each makes exactly one commit):
///   request          caller send() → bench-state's handler entered (host in between)
///   to the writer    handler entered → `BEGIN IMMEDIATE` on the writer thread (the handler,
///                    the snapshot, the hand-off to the writer thread)
///   write            BEGIN → the commit hook (the UPDATE)
///   commit           the commit hook → `COMMIT` returned (the WAL write; with sync = full, fsync)
///   answer           COMMIT returned → the answer callback at the caller (the completion, the
///                    held answer released onto the connection, host, caller)
///   handler → answer handler entered → the answer callback (the whole of the agent's side)
/// - Returns: median µs of each step (nil where a step does not apply or stamps do not match).
func rpcTimeline(_ bench: some BenchStateAgents & TimelineSource, calls: Int, messageType: String = "Echo") async throws -> [String: Double] {
    _ = try await bench.stamps()
    bench.startTimeline()
    let run = try await bench.callerRun(count: calls, key: "rpc", messageType: messageType, stamps: true)
    let timeline = bench.stopTimeline()
    let entered = try await bench.stamps().filter { $0.kind == UInt8(ascii: "C") }.map(\.ns)
    guard let sent = run.sent, entered.count == calls else {
        note("rpc timeline (\(bench.mode.rawValue)): \(entered.count) handler stamps for \(calls) calls; no split")
        return [:]
    }
    let answered = (0..<calls).map { sent[$0] &+ run.samples[$0] }
    func median(_ values: [UInt64]) -> Double { quantileUs(values.sorted(), 0.5) }
    var phases: [String: Double] = [
        "request": median((0..<calls).map { entered[$0] &- sent[$0] }),
        "handler → answer": median((0..<calls).map { answered[$0] &- entered[$0] }),
        "total": median(run.samples),
    ]
    if let timeline {
        guard timeline.begun.count == calls, timeline.committing.count == calls, timeline.committed.count == calls else {
            note("rpc timeline (\(bench.mode.rawValue)): \(timeline.begun.count)/\(timeline.committing.count)/\(timeline.committed.count) transactions for \(calls) calls; no split")
            return phases
        }
        phases["to the writer"] = median((0..<calls).map { timeline.begun[$0] &- entered[$0] })
        phases["write"] = median((0..<calls).map { timeline.committing[$0] &- timeline.begun[$0] })
        phases["commit"] = median((0..<calls).map { timeline.committed[$0] &- timeline.committing[$0] })
        phases["answer"] = median((0..<calls).map { answered[$0] &- timeline.committed[$0] })
    }
    return phases
}

/// One agent's events with every step stamped: its handler entries, and the store's
/// transactions (an event's checkpoint waits while more messages are queued for the agent, at
/// most 64, so a burst shares its writes):
///   events per write   events / commits
///   write, commit      as in ``rpcTimeline(_:calls:messageType:)``, per transaction
///   per event          handler entered → the next one's
/// and where each event has a transaction of its own (events arriving one at a time):
///   to the writer      handler entered → BEGIN on the writer thread
///   to the next        COMMIT returned → the next event's handler entered (the completion, the
///                      agent scheduled again, a worker taking it)
func eventTimeline(_ bench: StateRuntime, key: String, events: Int) async throws -> [String: Double] {
    _ = try await bench.stats(key)
    _ = try await bench.stamps()
    bench.startTimeline()
    let run = try await stateEventRun(bench, keys: [key], events: events)
    let timeline = bench.stopTimeline()
    let entered = try await bench.stamps().filter { $0.kind == UInt8(ascii: "E") }.map(\.ns)
    guard entered.count == events, run.counted == events else {
        note("event timeline (\(bench.mode.rawValue)): \(entered.count) handler stamps for \(events) events; no split")
        return [:]
    }
    func median(_ values: [UInt64]) -> Double { quantileUs(values.sorted(), 0.5) }
    let steps = events - 1
    var phases: [String: Double] = ["per event": median((0..<steps).map { entered[$0 + 1] &- entered[$0] })]
    guard let timeline else { return phases }
    let transactions = min(timeline.begun.count, timeline.committing.count, timeline.committed.count)
    guard transactions > 0 else { return phases }
    phases["events per write"] = Double(events) / Double(transactions)
    phases["write"] = median((0..<transactions).map { timeline.committing[$0] &- timeline.begun[$0] })
    phases["commit"] = median((0..<transactions).map { timeline.committed[$0] &- timeline.committing[$0] })
    if transactions == events {
        phases["to the writer"] = median((0..<steps).map { timeline.begun[$0] &- entered[$0] })
        phases["to the next"] = median((0..<steps).map { entered[$0 + 1] &- timeline.committed[$0] })
    }
    return phases
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

extension CommitSummary {
    init(commits: Int, writes: Int, empty: Int, largest: Int) {
        self.init([])
        self.commits = commits
        self.writes = writes
        self.empty = empty
        self.largest = largest
    }
}

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
