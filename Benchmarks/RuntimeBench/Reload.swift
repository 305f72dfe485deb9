import AgentCore
import AgentRuntime
import Foundation
import Synchronization

/// The directory watcher's quiet period (`Reloader.watch`, a constant there): a rescan starts
/// this long after the last change to a `.so` file of the folder.
let watcherQuietPeriodMs = 150.0

/// A window's end past the last sign of the swap (its log line, the first answer by the new
/// version): the old version's unload and the agents' migration happen around then.
let swapWindowTailNs: UInt64 = 20_000_000

// MARK: Traffic during the swaps

struct ProbeSample {
    var start: UInt64
    var end: UInt64
    /// The version that answered; 0 for an error.
    var version: Int
}

/// One client's back-to-back `Get` RPCs to one agent.
final class Probe: Sendable {
    let stopFlag = Atomic<Bool>(false)
    let lastVersion = Atomic<Int>(0)
    let failures = Mutex<[String]>([])

    func run(_ client: WorkerClient, key: String) async -> [ProbeSample] {
        var samples: [ProbeSample] = []
        samples.reserveCapacity(200_000)
        while !stopFlag.load(ordering: .acquiring) {
            let start = nowNs()
            do {
                let (version, _) = try await client.versionedGet(key)
                samples.append(ProbeSample(start: start, end: nowNs(), version: version))
                lastVersion.store(version, ordering: .releasing)
            } catch {
                samples.append(ProbeSample(start: start, end: nowNs(), version: 0))
                failures.withLock { $0.append("Get \(key): \(error)") }
            }
        }
        return samples
    }
}

/// One client publishing events at a steady rate, round-robin over keys.
final class Publisher: Sendable {
    let stopFlag = Atomic<Bool>(false)
    let failures = Mutex<[String]>([])

    /// Returns the events published per key.
    func run(_ client: WorkerClient, keys: [String], rate: Double) async -> [String: Int] {
        var sent: [String: Int] = [:]
        let topics = keys.map { TopicID(type: "versioned-events", source: $0) }
        let start = nowNs()
        var published = 0
        while !stopFlag.load(ordering: .acquiring) {
            let due = Int(Double(nowNs() - start) / 1e9 * rate)
            while published < due {
                let index = published % keys.count
                do {
                    try client.publish(emptyJSON, messageType: "Tick", to: topics[index])
                    sent[keys[index], default: 0] += 1
                } catch {
                    failures.withLock { $0.append("publish: \(error)") }
                }
                published += 1
            }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return sent
    }
}

// MARK: The swaps

struct SwapRecord {
    var target: Int
    var rename: UInt64
    /// When "plugin replaced" for the target version was logged.
    var logged: UInt64?
    /// When the first RPC answered by the target version returned (from the probe's samples).
    var firstNew: UInt64?
}

/// Swaps versioned.so between the versions `count` times (2, 1, 2, ...), `gap` apart: stage
/// the new file under a hidden name, rename it in, and wait until the probe sees the new
/// version answer and the runtime logs the replacement. With `viaRescan` the rename is
/// followed by `AgentRuntime.rescan()` (the SIGHUP path) instead of waiting for the watcher.
func runSwaps(_ bench: BenchRuntime, count: Int, gap: Duration, viaRescan: Bool, probe: Probe,
              images: [Int: Data]) async -> (records: [SwapRecord], hang: String?) {
    var records: [SwapRecord] = []
    for index in 0..<count {
        let target = index % 2 == 0 ? 2 : 1
        let staged: (temporary: String, final: String)
        do { staged = try bench.stage(images[target]!, as: "versioned.so") } catch { fail("staging: \(error)") }
        try? await Task.sleep(for: gap)
        let mark = bench.log.count
        let renamed = nowNs()
        bench.commit(staged)
        if viaRescan { await bench.runtime.rescan() }
        var record = SwapRecord(target: target, rename: renamed)
        let deadline = ContinuousClock.now + .seconds(15)
        while probe.lastVersion.load(ordering: .acquiring) != target && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .microseconds(200))
        }
        if probe.lastVersion.load(ordering: .acquiring) != target {
            return (records, "swap \(index + 1) to version \(target): no RPC answered by version \(target) within 15 s of the rename (last answer by version \(probe.lastVersion.load(ordering: .acquiring)))")
        }
        let logged = await bench.log.wait(since: mark) {
            $0.message == "plugin replaced" && $0.metadata["plugin.version"] == "\(target).0.0"
        }
        guard let logged else {
            return (records, "swap \(index + 1) to version \(target): no \"plugin replaced\" log line within 15 s")
        }
        record.logged = logged.time
        records.append(record)
    }
    return (records, nil)
}

struct SwapAnalysis {
    /// Rename → first RPC answered by the new version, per swap.
    var latencyMs: [Double] = []
    /// Rename → "plugin replaced" logged, per swap.
    var loggedMs: [Double] = []
    /// The latencies of RPCs overlapping a swap window / the others (sorted, ns).
    var during: [UInt64] = []
    var outside: [UInt64] = []
    /// The longest RPC of each swap window.
    var perSwapMaxMs: [Double] = []
    var failedRPCs = 0
}

/// Splits the probe's RPCs by whether they overlap a swap window: from when the rescan can
/// start (the rename, plus the quiet period with the watcher) to the later of the first
/// new-version answer and the log line, plus ``swapWindowTailNs``.
func analyze(_ samples: [ProbeSample], _ records: inout [SwapRecord], windowOffset: UInt64) -> SwapAnalysis {
    var analysis = SwapAnalysis()
    var windows: [(UInt64, UInt64)] = []
    for index in records.indices {
        let record = records[index]
        let firstNew = samples.lazy.filter { $0.end >= record.rename && $0.version == record.target }.map(\.end).min()
        records[index].firstNew = firstNew
        if let firstNew { analysis.latencyMs.append(ms(firstNew - record.rename)) }
        if let logged = record.logged { analysis.loggedMs.append(ms(logged - record.rename)) }
        let end = max(firstNew ?? record.rename, record.logged ?? record.rename) + swapWindowTailNs
        windows.append((record.rename + windowOffset, end))
    }
    var perSwapMax = [UInt64](repeating: 0, count: windows.count)
    for sample in samples {
        if sample.version == 0 { analysis.failedRPCs += 1 }
        let latency = sample.end - sample.start
        if let window = windows.firstIndex(where: { sample.start < $0.1 && sample.end > $0.0 }) {
            analysis.during.append(latency)
            perSwapMax[window] = max(perSwapMax[window], latency)
        } else {
            analysis.outside.append(latency)
        }
    }
    analysis.during.sort()
    analysis.outside.sort()
    analysis.perSwapMaxMs = perSwapMax.map(ms)
    return analysis
}

struct ReloadPhase {
    var name: String
    var swaps: Int
    var analysis = SwapAnalysis()
    var hang: String?
    var failures: [String] = []
    /// Events published during the phase and the final counts, per key.
    var sent: [String: Int] = [:]
    var counted: [String: Int] = [:]
    var finalVersionOK = true
    var eventsSent: Int { sent.values.reduce(0, +) }
    var eventsCounted: Int { counted.values.reduce(0, +) }
    var lost: Int { sent.keys.reduce(0) { $0 + max(0, sent[$1]! - (counted[$1] ?? 0)) } }
    var duplicated: Int { sent.keys.reduce(0) { $0 + max(0, (counted[$1] ?? 0) - sent[$1]!) } }
}

/// One reload experiment: a runtime serving versioned v1, a probe client calling `Get` back to
/// back, optionally a second client publishing `rate` events/s over `keys`, and `swaps` swaps.
func reloadPhase(name: String, _ options: Options, watch: Bool, publishRate: Double?) async throws -> ReloadPhase {
    var phase = ReloadPhase(name: name, swaps: options.swaps)
    let images = [1: Products.bytes("VersionedPluginV1"), 2: Products.bytes("VersionedPluginV2")]
    let bench = try await BenchRuntime.start(plugins: [("versioned.so", "VersionedPluginV1")], watch: watch)
    let probeClient = try bench.client()
    let publisherClient = try bench.client()
    for _ in 0..<200 { _ = try await probeClient.versionedGet("probe") }

    let probe = Probe()
    let publisher = Publisher()
    let keys = (0..<options.keys).map { "r-k\($0)" }
    let probeTask = Task.detached { await probe.run(probeClient, key: "probe") }
    let publisherTask = publishRate.map { rate in
        Task.detached { await publisher.run(publisherClient, keys: keys, rate: rate) }
    }
    let gap = Duration.milliseconds(options.swapGapMs)
    let swapped = await runSwaps(bench, count: options.swaps, gap: gap, viaRescan: !watch, probe: probe, images: images)
    var records = swapped.records
    let hang = swapped.hang
    phase.hang = hang
    try? await Task.sleep(for: gap)
    publisher.stopFlag.store(true, ordering: .releasing)
    probe.stopFlag.store(true, ordering: .releasing)
    phase.sent = await publisherTask?.value ?? [:]
    let samples = await probeTask.value
    phase.failures = probe.failures.withLock { $0 } + publisher.failures.withLock { $0 }
    phase.analysis = analyze(samples, &records, windowOffset: watch ? UInt64(watcherQuietPeriodMs * 1e6) : 0)
    note("reload phase \(name): per swap, rename → first new answer / logged (ms): " + records.map { record in
        String(format: "%.1f/%.1f", record.firstNew.map { ms($0 - record.rename) } ?? .nan,
               record.logged.map { ms($0 - record.rename) } ?? .nan)
    }.joined(separator: " ") + "; longest RPC per swap window (ms): " + phase.analysis.perSwapMaxMs.map { String(format: "%.2f", $0) }.joined(separator: " "))

    if publishRate != nil, hang == nil {
        // Wait until every published event is counted (or the counts stop moving for 5 s),
        // then read once more to catch duplicates.
        let expectedVersion = records.last?.target ?? 1
        var lastProgress = nowNs()
        var previous = -1
        while true {
            var counted: [String: Int] = [:]
            for key in keys {
                let (version, count) = try await probeClient.versionedGet(key)
                counted[key] = count
                if version != expectedVersion { phase.finalVersionOK = false }
            }
            phase.counted = counted
            let total = counted.values.reduce(0, +)
            if total != previous {
                previous = total
                lastProgress = nowNs()
            }
            if keys.allSatisfy({ counted[$0] == phase.sent[$0, default: 0] }) || nowNs() - lastProgress > 5_000_000_000 { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(200))
        for key in keys { phase.counted[key] = try await probeClient.versionedGet(key).count }
    }
    await bench.stop([probeClient, publisherClient])
    return phase
}
