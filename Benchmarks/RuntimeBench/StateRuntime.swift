import AgentCore
@_spi(Benchmarks) import AgentRuntime
import AgentState
import Foundation
import GRPCTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: The runtimes the state section measures, and the RPCs it makes to them

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
