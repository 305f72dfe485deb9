import AgentCore
@_spi(Benchmarks) import AgentRuntime
import Foundation
import GRPCTransport

// MARK: Resident memory with a million agents addressed (section 5)
//
// In a fresh process (this executable with --state-memory-child), a runtime with a SQLite
// store (sync = normal) and `maxResidentAgents` = M: one event each to agents bench-state/k0,
// k1, …, k(N-1) — N distinct keys, each addressed once — through `deliverFromHost` (no
// network). Each event activates its agent (a read that finds nothing, create), is counted,
// and is checkpointed (the first write of that agent); past M resident agents the least
// recently used are retired (final checkpoint — nothing new to write — and destroy).
//
// The feed is paced: at most `window` events handed over and not yet handled (the plugin's
// Totals count them), as a host's bounded queue would pace it. A burst of a million events at
// once measures the mailboxes of a million agents queued before any could retire, not
// residency. VmRSS is read after the first 1,000 keys and at every checkpoint of the curve,
// each time once the fed events are handled; the resident agents, activations, retirements,
// commits and checkpoints are the runtime's (`AgentRuntime.agentStatistics`).

struct StateMemoryPoint {
    var keys: Int
    var rssBytes: Int
    var resident: Int
    var seconds: Double
    /// The heap's bytes in use and free (glibc's arenas).
    var heapUsed: Int
    var heapFree: Int
}

struct StateMemoryFigures {
    var maxResident: Int
    var keys: Int
    var window: Int
    var startRss = 0
    var points: [StateMemoryPoint] = []
    var hwmBytes = 0
    var storeBytes = 0
    var commits = CommitSummary([])
    var seconds = 0.0
    var handled = 0
    /// The fewest agents resident at any drain once 90 % of `maxResident` had first been
    /// reached (a retirement pass retires down to 90 % of it, no further).
    var lowestResident = 0
    /// VmRSS at the end after glibc's malloc_trim(0): what of the growth is free heap the
    /// allocator kept.
    var trimmedRss = 0
    /// From the runtime's agentStatistics over the run.
    var activations = 0
    var deactivations = 0

    var first: StateMemoryPoint? { points.first }
    var last: StateMemoryPoint? { points.last }

    /// The child's output: one `name value…` line per figure.
    var lines: String {
        var text = "max_resident \(maxResident)\nkeys \(keys)\nwindow \(window)\nstart_rss \(startRss)\n"
        for point in points {
            text += "point \(point.keys) \(point.rssBytes) \(point.resident) \(point.seconds) \(point.heapUsed) \(point.heapFree)\n"
        }
        text += "lowest_resident \(lowestResident)\ntrimmed_rss \(trimmedRss)\n"
        text += "activations \(activations)\ndeactivations \(deactivations)\n"
        text += "hwm \(hwmBytes)\nstore_bytes \(storeBytes)\ncommits \(commits.commits) \(commits.writes) \(commits.largest)\n"
        text += "seconds \(seconds)\nhandled \(handled)\n"
        return text
    }

    init(maxResident: Int, keys: Int, window: Int) {
        self.maxResident = maxResident
        self.keys = keys
        self.window = window
    }

    init?(lines: String) {
        self.init(maxResident: 0, keys: 0, window: 0)
        for line in lines.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard let name = fields.first else { continue }
            let numbers = fields.dropFirst().compactMap { Double($0) }
            switch (name, numbers.count) {
            case ("max_resident", 1): maxResident = Int(numbers[0])
            case ("keys", 1): keys = Int(numbers[0])
            case ("window", 1): window = Int(numbers[0])
            case ("start_rss", 1): startRss = Int(numbers[0])
            case ("point", 6):
                points.append(StateMemoryPoint(keys: Int(numbers[0]), rssBytes: Int(numbers[1]), resident: Int(numbers[2]),
                                               seconds: numbers[3], heapUsed: Int(numbers[4]), heapFree: Int(numbers[5])))
            case ("lowest_resident", 1): lowestResident = Int(numbers[0])
            case ("trimmed_rss", 1): trimmedRss = Int(numbers[0])
            case ("activations", 1): activations = Int(numbers[0])
            case ("deactivations", 1): deactivations = Int(numbers[0])
            case ("hwm", 1): hwmBytes = Int(numbers[0])
            case ("store_bytes", 1): storeBytes = Int(numbers[0])
            case ("commits", 3):
                commits = CommitSummary(commits: Int(numbers[0]), writes: Int(numbers[1]), empty: 0, largest: Int(numbers[2]))
            case ("seconds", 1): seconds = numbers[0]
            case ("handled", 1): handled = Int(numbers[0])
            default: continue
            }
        }
        if points.isEmpty { return nil }
    }
}

/// VmHWM of this process, in bytes.
func peakResidentBytes() -> Int {
    guard let text = readProcFile("/proc/self/status") else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 2, let kib = Int(fields[1]) { return kib * 1024 }
    }
    return 0
}

/// The measurement itself (in the child).
func runStateMemory(keys: Int, maxResident: Int, window: Int, stateBytes: Int, directory: String?) async throws -> StateMemoryFigures {
    var figures = StateMemoryFigures(maxResident: maxResident, keys: keys, window: window)
    let folder = try stateFolder(directory)
    defer { try? FileManager.default.removeItem(atPath: folder.path) }
    let path = "\(folder.path)/agents.db"
    let bench = try await StateRuntime(mode: .normal, storePath: path, maxResident: maxResident, stateBytes: stateBytes)
    // The runtime, its plugins and the bench's client are in place; the type has reported a
    // change once (so that later messages are checkpointed only when they change the state).
    _ = try await bench.callerRun(count: 200, key: "warm", messageType: "Echo")
    _ = try await bench.totals()
    figures.startRss = residentBytes()
    let base = try await bench.totals()
    let mark = bench.commits?.commits ?? 0
    let baseStatistics = bench.runtime.agentStatistics
    let start = nowNs()
    var curve = [1_000, 10_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000].filter { $0 < keys } + [keys]
    curve = Array(Set(curve)).sorted()

    /// Waits until every event fed so far but `slack` is handled; the totals then.
    func drain(fed: Int, slack: Int) async throws -> (handled: Int, created: Int, destroyed: Int) {
        var previous = -1, progressAt = nowNs()
        while true {
            let t = try await bench.totals()
            let handled = t.handled - base.handled
            let resident = bench.runtime.agentStatistics.resident
            if resident >= maxResident - maxResident / 10 { bounded = true }
            if bounded { figures.lowestResident = min(figures.lowestResident, resident) }
            if handled >= fed - slack { return (handled, t.created - base.created, t.destroyed - base.destroyed) }
            let now = nowNs()
            if handled != previous {
                previous = handled
                progressAt = now
            } else if now - progressAt > 10_000_000_000 {
                throw RuntimeError("state memory: handled stuck at \(handled) of \(fed) fed for 10 s")
            }
            try await Task.sleep(for: .microseconds(200))
        }
    }

    var fed = 0
    var bounded = false
    figures.lowestResident = Int.max
    let chunk = max(1, min(window / 2, 1_000))
    for target in curve {
        while fed < target {
            let end = min(target, fed + chunk)
            for index in fed..<end {
                let bytes = BenchEventEncoder.envelope(id: BenchEventEncoder.idPrefix + String(format: "%012x", index),
                                                       topicType: "bench-state-events", topicSource: "k\(index)")
                bench.runtime.deliverFromHost(MessageBuffer(bytes))
            }
            fed = end
            _ = try await drain(fed: fed, slack: window)
        }
        let done = try await drain(fed: fed, slack: 0)
        // The retirement pass that the last agents started runs in the background: let it finish.
        try await Task.sleep(for: .milliseconds(300))
        let resident = bench.runtime.agentStatistics.resident
        let heap = try await bench.heap()
        figures.points.append(StateMemoryPoint(keys: target, rssBytes: residentBytes(), resident: resident,
                                               seconds: Double(nowNs() - start) / 1e9, heapUsed: heap.used, heapFree: heap.free))
        figures.handled = done.handled
        note(String(format: "state memory (max_resident %d): %d keys addressed in %.1f s, VmRSS %.1f MiB (heap in use %.1f MiB, free %.1f MiB), %d agents resident",
                    maxResident, target, figures.points.last!.seconds, Double(figures.points.last!.rssBytes) / mib,
                    Double(heap.used) / mib, Double(heap.free) / mib, resident))
    }
    figures.seconds = Double(nowNs() - start) / 1e9
    if figures.lowestResident == .max { figures.lowestResident = 0 }
    figures.hwmBytes = peakResidentBytes()
    _ = try await bench.client.send(emptyJSON, messageType: "Trim", to: AgentID(type: "bench-state", key: "totals"))
    figures.trimmedRss = residentBytes()
    let statistics = bench.runtime.agentStatistics
    figures.commits = CommitSummary(commits: statistics.commits - baseStatistics.commits,
                                    writes: statistics.checkpoints - baseStatistics.checkpoints, empty: 0,
                                    largest: CommitSummary(bench.commits?.batches(since: mark) ?? []).largest)
    figures.deactivations = statistics.deactivations - baseStatistics.deactivations
    figures.activations = statistics.activations - baseStatistics.activations
    await bench.stop()
    for suffix in ["", "-wal", "-shm"] {
        let size = (try? FileManager.default.attributesOfItem(atPath: path + suffix)[.size] as? Int) ?? nil
        figures.storeBytes += size ?? 0
    }
    return figures
}

/// Runs the measurement in a fresh process (this executable with --state-memory-child).
func runStateMemoryInChild(keys: Int, maxResident: Int, window: Int, stateBytes: Int, directory: String?) -> StateMemoryFigures? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var arguments = ["--state-memory-child", "--state-keys", "\(keys)", "--max-resident", "\(maxResident)",
                     "--state-window", "\(window)", "--state-bytes", "\(stateBytes)"]
    if let directory { arguments += ["--state-dir", directory] }
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    do { try process.run() } catch {
        note("cannot run the state memory measurement: \(error)")
        return nil
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        note("the state memory measurement exited with \(process.terminationStatus)")
        return nil
    }
    return StateMemoryFigures(lines: String(decoding: data, as: UTF8.self))
}
