import Foundation

// MARK: Printing sections 4 and 5
//
// Besides the table, each comparison is printed as one line `NAME store_on=X store_off=Y
// ratio=Z` (or with the two sides it compares), and every figure as a `NAME=value` line at the
// end with the other sections' (Benchmarks/compare reads those).

func spread(_ values: [Double]) -> String {
    guard let low = values.min(), let high = values.max() else { return "-" }
    return "\(f2(low))–\(f2(high))"
}

func verdict(_ holds: Bool) -> String { holds ? "holds" : "MISSED" }

@MainActor func printState(_ s: StateFigures, _ options: Options) {
    let rounds = options.runs
    print("")
    print("4. Agents that keep their state: agent type bench-state (libBenchAgents.so; snapshot \(24 + options.stateBytes) bytes,")
    print("   state_changed on every event and Echo) in runtimes that differ only in the store: none (off), SQLite sync = normal,")
    print("   SQLite sync = full; the modes take turns, their order rotating each round.")
    print("   Store files in \(s.folder) (\(s.fileSystem)).")
    print(String(format: "   The section took %.0f s; other processes used %.2f of the %d cores meanwhile%@.", s.seconds, s.backgroundCores,
                 ProcessInfo.processInfo.activeProcessorCount, s.backgroundCores > 0.25 ? " — WARNING: disturbed, figures noisy" : ""))
    figure("state_background_cores", f2(s.backgroundCores))

    // RPC
    let off = s.rpc[.off] ?? [], normal = s.rpc[.normal] ?? [], full = s.rpc[.full] ?? []
    print("")
    print("   RPC Echo to bench-state/rpc from agent bench-caller/run (a C plugin in the same runtime): caller → embedded host")
    print("   → runtime → agent → host → caller over loopback gRPC; with a store the answer is held until the checkpoint's")
    print("   group commit. The three runtimes alive at once, each in a process of its own (runtime-bench --state-server);")
    print("   \(s.rpcCalls[.off] ?? 0) sequential calls per mode and round (sync = full: \(s.rpcCalls[.full] ?? 0)), in ten slices, the modes taking turns")
    print("   slice by slice; \(rounds) rounds: per-round percentiles, median of the rounds (pooled: all samples of all rounds).")
    print("   " + pad("", 22) + lpad("p50 µs", 9) + lpad("p99 µs", 9) + lpad("pooled p50", 12) + lpad("pooled p99", 12)
          + "   writes/commit   p50 per round")
    for (label, mode, blocks) in [("store off", StoreMode.off, off), ("sync = normal", .normal, normal), ("sync = full", .full, full)] {
        let pooled = s.rpcPooled[mode] ?? []
        let commits = s.rpcCommits[mode].map { String(format: "%.2f", $0.writesPerCommit) } ?? "-"
        print("   " + pad(label, 22) + lpad(f1(median(blocks.map(\.p50))), 9) + lpad(f1(median(blocks.map(\.p99))), 9)
              + lpad(f1(quantileUs(pooled, 0.5)), 12) + lpad(f1(quantileUs(pooled, 0.99)), 12)
              + lpad(commits, 16) + "   " + blocks.map { f1($0.p50) }.joined(separator: ", "))
    }
    let ratioNormal = median(s.rpcRatioNormal), ratioFull = median(s.rpcRatioFull)
    let ratioFullNormal = median(s.rpcRatioFullOverNormal)
    let p99RatioNormal = median(zip(normal, off).map { $0.p99 / $1.p99 })
    print("   " + pad("p50 normal / off", 40) + lpad(f2(ratioNormal), 7) + "   rounds " + spread(s.rpcRatioNormal)
          + "   target ≤ 1.5: " + verdict(ratioNormal <= 1.5))
    print("   " + pad("p99 normal / off", 40) + lpad(f2(p99RatioNormal), 7))
    print("   " + pad("p50 full / normal", 40) + lpad(f2(ratioFullNormal), 7) + "   rounds " + spread(s.rpcRatioFullOverNormal))
    print("   " + pad("p50 full / off", 40) + lpad(f2(ratioFull), 7) + "   rounds " + spread(s.rpcRatioFull))
    if s.rpcFailed > 0 { findings.append("state rpc: \(s.rpcFailed) calls failed") }
    print("")
    print("   Where an RPC's time goes (the same processes): a block of 500 calls (sync = full: 200) per mode and round with")
    print("   every step stamped (one clock: caller plugin, agent plugin, SQLite's hooks, all in the serving process),")
    print("   matched call by call; median µs of each step, median")
    print("   of the rounds. request: send → handler entered; to the writer: handler entered → BEGIN on the writer thread;")
    print("   write: BEGIN → commit hook; commit: → COMMIT returned; answer: COMMIT returned → answer callback at the caller.")
    let rpcSteps = ["request", "to the writer", "write", "commit", "answer", "handler → answer", "total"]
    let rpcRows = [StoreMode.off.row, StoreMode.deferredRow, StoreMode.normal.row, StoreMode.full.row]
    printPhases(s.rpcTimeline, rows: rpcRows, rpcSteps, figurePrefix: "state_rpc_step")
    print("   (\(StoreMode.deferredRow): the store-off runtime, EchoDeferred — the agent's plugin answers from a thread of its")
    print("   own, as the store's writer thread answers held RPCs: the cost of the hand-offs without any store.)")

    // Events
    print("")
    print("   Events in process (one fresh runtime per run): encoded CloudEvents to topic (bench-state-events, KEY) handed to")
    print("   deliverFromHost (no network),")
    print("   round-robin over the agents; first delivery → the plugin's last receipt; \(rounds) rounds, medians. With a store an")
    print("   event's checkpoint waits while more messages are queued for its agent (at most 64), and an agent takes its next")
    print("   message once a checkpoint it wrote is committed; writes per commit from the runtime's agentStatistics.")
    print("   " + pad("", 22) + lpad("events", 8) + lpad("off /s", 10) + lpad("normal /s", 11) + lpad("full /s", 10)
          + lpad("normal/off", 12) + lpad("full/off", 10) + "   writes/commit normal, full")
    var eventRatios: [Int: [Double]] = [:]
    for agents in s.events.keys.sorted() {
        let byMode = s.events[agents]!
        func rate(_ mode: StoreMode) -> Double { median(byMode[mode]?.map(\.eventsPerSecond) ?? []) }
        func perRound(_ mode: StoreMode) -> [Double] {
            zip(byMode[mode] ?? [], byMode[.off] ?? []).map { $0.eventsPerSecond / $1.eventsPerSecond }
        }
        func writesPerCommit(_ mode: StoreMode) -> String {
            let runs = byMode[mode] ?? []
            let commits = runs.compactMap(\.commits).map(\.commits).reduce(0, +)
            let writes = runs.compactMap(\.commits).map(\.writes).reduce(0, +)
            return commits == 0 ? "-" : f2(Double(writes) / Double(commits))
        }
        eventRatios[agents] = perRound(.normal)
        let counts = Set((byMode[.off] ?? []).map(\.events) + (byMode[.normal] ?? []).map(\.events))
        print("   " + pad(agents == 1 ? "1 agent" : "\(agents) agents", 22)
              + lpad(counts.sorted().map { "\($0)" }.joined(separator: "/"), 8)
              + lpad(String(format: "%.0f", rate(.off)), 10) + lpad(String(format: "%.0f", rate(.normal)), 11)
              + lpad(String(format: "%.0f", rate(.full)), 10) + lpad(f2(median(perRound(.normal))), 12)
              + lpad(f2(median(perRound(.full))), 10) + "   " + writesPerCommit(.normal) + ", " + writesPerCommit(.full))
        print("   " + pad("", 22) + "  normal/off per round: " + perRound(.normal).map(f2).joined(separator: ", ")
              + "   target ≥ 0.5: " + verdict(median(perRound(.normal)) >= 0.5))
        let all = byMode.values.flatMap { $0 }
        let lost = all.map(\.lost).reduce(0, +), duplicated = all.map(\.duplicated).reduce(0, +)
        if lost + duplicated > 0 { findings.append("state events, \(agents) agents: \(lost) lost, \(duplicated) duplicated") }
    }
    print("")
    print("   Where one agent's event time goes (in process, a burst of 2,000 events): its handler entries")
    print("   and the store's transactions stamped; events per write; write and commit per transaction; per event: handler")
    print("   entered → the next one's (to the writer / to the next: only where each event has a transaction of its own).")
    print("   Median µs, median of the rounds.")
    printPhases(s.eventTimeline, rows: StoreMode.allCases.map(\.row), ["events per write", "write", "commit", "to the writer",
                                                                      "to the next", "per event"], figurePrefix: "state_event_step")

    // Activation
    print("")
    print("   Activation: \(s.activationKeys) agents each sent one RPC by bench-caller (sequential, through the host), alternating call")
    print("   by call with an RPC to a resident agent (bench-state/ref); the first message to an agent whose state is stored")
    print("   comes after a restart of the runtime on the same store file.")
    print("   " + pad("first message to …", 46) + lpad("p50 µs", 9) + lpad("p99 µs", 9) + lpad("request", 9) + lpad("answer", 9)
          + "   p50 per round")
    let cases: [(String, String)] = [
        ("stored+read", "an agent whose state is stored (GetStats)"), ("resident+read", "  alternating with: a resident agent"),
        ("stored+write", "an agent whose state is stored (Echo)"), ("resident+write2", "  alternating with: a resident agent"),
        ("new+write", "a new agent, nothing stored (Echo)"), ("resident+write", "  alternating with: a resident agent"),
        ("off new", "a new agent, no store (GetStats)"), ("off resident", "  alternating with: a resident agent"),
    ]
    var activation: [String: (p50: Double, p99: Double)] = [:]
    for (name, label) in cases {
        let runs = s.activation[name] ?? []
        let p50 = median(runs.map { quantileUs($0, 0.5) }), p99 = median(runs.map { quantileUs($0, 0.99) })
        activation[name] = (p50, p99)
        let split = s.activationSplit[name] ?? []
        print("   " + pad(label, 46) + lpad(f1(p50), 9) + lpad(f1(p99), 9) + lpad(f1(median(split.map(\.request))), 9)
              + lpad(f1(median(split.map(\.answer))), 9) + "   "
              + runs.map { f1(quantileUs($0, 0.5)) }.joined(separator: ", "))
    }
    let activationCost = (activation["stored+read"]?.p50 ?? .nan) - (activation["resident+read"]?.p50 ?? .nan)
    let activationRatio = (activation["stored+read"]?.p50 ?? .nan) / (activation["resident+read"]?.p50 ?? .nan)
    print("   (request: send → the handler entered, the activation included; answer: the handler entered → the answer")
    print("   callback; p50s, median of the rounds)")
    let requestCost = median(s.activationSplit["stored+read"]?.map(\.request) ?? [])
        - median(s.activationSplit["resident+read"]?.map(\.request) ?? [])
    print("   " + pad("activation from the store, request p50 stored − resident", 46) + lpad(f1(requestCost), 9))
    figure("state_activation_request_cost_us", f1(requestCost))
    print("   " + pad("activation from the store, p50 stored − resident", 46) + lpad(f1(activationCost), 9)
          + "   (ratio " + f2(activationRatio) + "; per round: "
          + zip(s.activation["stored+read"] ?? [], s.activation["resident+read"] ?? []).map {
              f2(quantileUs($0, 0.5) / quantileUs($1, 0.5)) }.joined(separator: ", ") + ")")
    if let commits = s.activationCommits { print("   " + pad("commits (new+write, resident+write)", 46) + "   " + commits.text) }

    // The store alone
    print("")
    print("   SQLiteStateStore alone (its public API, on the same file system; 24-byte states; \(rounds) rounds, medians):")
    for name in ["put 1 (normal)", "put 64 (normal), per write", "put 1 (full)", "put 64 (full), per write", "get", "get missing",
                 "get during commits (full), p50"] {
        let values = s.store[name] ?? []
        print("   " + pad(name, 46) + lpad(f1(median(values)), 9) + " µs   runs: " + values.map(f1).joined(separator: ", "))
    }

    // One line per comparison.
    let offP50 = median(off.map(\.p50)), normalP50 = median(normal.map(\.p50)), fullP50 = median(full.map(\.p50))
    let offP99 = median(off.map(\.p99)), normalP99 = median(normal.map(\.p99))
    print("")
    print("state_rpc_p50_us store_on=\(f1(normalP50)) store_off=\(f1(offP50)) ratio=\(f2(ratioNormal))")
    print("state_rpc_p99_us store_on=\(f1(normalP99)) store_off=\(f1(offP99)) ratio=\(f2(p99RatioNormal))")
    print("state_rpc_p50_sync_us sync_full=\(f1(fullP50)) sync_normal=\(f1(normalP50)) ratio=\(f2(ratioFullNormal))")
    for agents in s.events.keys.sorted() {
        let byMode = s.events[agents]!
        let on = median(byMode[.normal]?.map(\.eventsPerSecond) ?? []), offRate = median(byMode[.off]?.map(\.eventsPerSecond) ?? [])
        print("state_events_per_s_\(agents)agent\(agents == 1 ? "" : "s") store_on=\(String(format: "%.0f", on)) store_off=\(String(format: "%.0f", offRate)) ratio=\(f2(median(eventRatios[agents] ?? [])))")
    }
    print("state_activation_p50_us stored=\(f1(activation["stored+read"]?.p50 ?? .nan)) resident=\(f1(activation["resident+read"]?.p50 ?? .nan)) ratio=\(f2(activationRatio))")

    figure("state_rpc_p50_off_us", f1(offP50)); figure("state_rpc_p50_normal_us", f1(normalP50)); figure("state_rpc_p50_full_us", f1(fullP50))
    figure("state_rpc_p99_off_us", f1(offP99)); figure("state_rpc_p99_normal_us", f1(normalP99))
    figure("state_rpc_p99_full_us", f1(median(full.map(\.p99))))
    figure("state_rpc_p50_ratio", f2(ratioNormal)); figure("state_rpc_p99_ratio", f2(p99RatioNormal))
    figure("state_rpc_p50_full_over_normal", f2(ratioFullNormal))
    figure("state_rpc_writes_per_commit", f2(s.rpcCommits[.normal]?.writesPerCommit ?? .nan))
    for agents in s.events.keys.sorted() {
        let byMode = s.events[agents]!
        for mode in StoreMode.allCases {
            figure("state_events_per_s_\(agents)_\(mode.rawValue)", String(format: "%.0f", median(byMode[mode]?.map(\.eventsPerSecond) ?? [])))
        }
        figure("state_events_ratio_\(agents)", f2(median(eventRatios[agents] ?? [])))
        let commits = (byMode[.normal] ?? []).compactMap(\.commits)
        let writes = commits.map(\.writes).reduce(0, +), count = commits.map(\.commits).reduce(0, +)
        figure("state_events_writes_per_commit_\(agents)", f2(count == 0 ? .nan : Double(writes) / Double(count)))
    }
    for (name, value) in activation {
        figure("state_activation_\(name.replacingOccurrences(of: "+", with: "_").replacingOccurrences(of: " ", with: "_"))_p50_us", f1(value.p50))
    }
    figure("state_activation_cost_us", f1(activationCost))
    for (name, values) in s.store.sorted(by: { $0.key < $1.key }) {
        let key = String(name.replacingOccurrences(of: ", per write", with: "").replacingOccurrences(of: ", p50", with: "")
            .map { $0.isLetter || $0.isNumber ? $0 : "_" }).replacingOccurrences(of: "__", with: "_")
            .trimmingCharacters(in: CharacterSet(charactersIn: "_"))
        figure("state_store_\(key)_us", f1(median(values)))
    }
}

/// A table of step medians: one row per mode, one column per step (median of the rounds).
@MainActor func printPhases(_ timelines: [String: [[String: Double]]], rows: [String], _ steps: [String], figurePrefix: String) {
    let width = (rows.map(\.count).max() ?? 16) + 1
    print("   " + pad("", width) + steps.map { lpad($0, max(9, $0.count + 2)) }.joined())
    for label in rows {
        guard let rounds = timelines[label], !rounds.isEmpty else { continue }
        print("   " + pad(label, width) + steps.map { step in
            let values = rounds.compactMap { $0[step] }
            return lpad(values.isEmpty ? "-" : f1(median(values)), max(9, step.count + 2))
        }.joined())
        for step in steps {
            let values = rounds.compactMap { $0[step] }
            if !values.isEmpty {
                let key = step.replacingOccurrences(of: " → ", with: "_to_").replacingOccurrences(of: " ", with: "_")
                let row = label.replacingOccurrences(of: "sync = ", with: "").replacingOccurrences(of: ", ", with: "_")
                    .replacingOccurrences(of: " ", with: "_")
                figure("\(figurePrefix)_\(row)_\(key)_us", f1(median(values)))
            }
        }
    }
}

@MainActor func printStateMemory(_ runs: [StateMemoryFigures], _ options: Options) {
    print("")
    print("5. Resident memory after \(options.stateKeys) distinct agents (bench-state/k0 …; snapshot \(24 + options.stateBytes) bytes) were each sent one event (deliverFromHost;")
    print("   at most \(options.stateWindow) unhandled at a time), SQLite store sync = normal; each bound in a fresh process.")
    print("   VmRSS after the first 1,000 keys is the baseline; target: after all of them within 2× of it.")
    print("   " + pad("max_resident", 14) + lpad("start MiB", 10) + lpad("1k keys", 9) + lpad("all keys", 10) + lpad("ratio", 7)
          + lpad("peak MiB", 10) + lpad("resident", 10) + lpad("seconds", 9) + lpad("keys/s", 9) + "   writes/commit")
    for run in runs {
        guard let first = run.first, let last = run.last else { continue }
        let ratio = Double(last.rssBytes) / Double(first.rssBytes)
        print("   " + pad("\(run.maxResident)", 14) + lpad(f1(Double(run.startRss) / mib), 10) + lpad(f1(Double(first.rssBytes) / mib), 9)
              + lpad(f1(Double(last.rssBytes) / mib), 10) + lpad(f2(ratio), 7) + lpad(f1(Double(run.hwmBytes) / mib), 10)
              + lpad("\(last.resident)", 10) + lpad(f1(run.seconds), 9) + lpad(String(format: "%.0f", Double(run.keys) / run.seconds), 9)
              + "   " + f2(run.commits.writesPerCommit) + "   target ≤ 2: " + verdict(ratio <= 2))
        print("   " + pad("", 14) + "  curve (keys: VmRSS MiB / heap in use MiB / heap free MiB, resident agents):")
        print("   " + pad("", 14) + "    " + run.points.map {
            "\($0.keys): \(f1(Double($0.rssBytes) / mib))/\(f1(Double($0.heapUsed) / mib))/\(f1(Double($0.heapFree) / mib)), \($0.resident)"
        }.joined(separator: "; "))
        if let peak = run.points.max(by: { $0.resident < $1.resident }), peak.resident > first.resident {
            let perAgent = Double(peak.heapUsed - first.heapUsed) / Double(peak.resident - first.resident)
            print("   " + pad("", 14) + String(format: "  heap in use per resident agent: %.0f bytes (1k keys → %d keys); lowest resident once bounded: %d (a pass retires to %d)",
                                                 perAgent, peak.keys, run.lowestResident, run.maxResident - run.maxResident / 10))
            figure("state_heap_bytes_per_resident_agent_\(run.maxResident)", String(format: "%.0f", perAgent))
            figure("state_lowest_resident_\(run.maxResident)", "\(run.lowestResident)")
        }
        print("   " + pad("", 14) + "  activations \(run.activations), retirements \(run.deactivations); \(run.commits.text)")
        print("   " + pad("", 14) + String(format: "  VmRSS after malloc_trim(0) at the end: %.1f MiB (ratio %.2f); store file %.1f MiB; %d events handled of %d",
                                             Double(run.trimmedRss) / mib, Double(run.trimmedRss) / Double(first.rssBytes),
                                             Double(run.storeBytes) / mib, run.handled, run.keys))
        figure("state_rss_trimmed_mib_\(run.maxResident)", f1(Double(run.trimmedRss) / mib))
        if run.handled != run.keys { findings.append("state memory (max_resident \(run.maxResident)): \(run.handled) of \(run.keys) events handled") }
        print("state_rss_mib_max_resident_\(run.maxResident) keys_\(run.keys)=\(f1(Double(last.rssBytes) / mib)) keys_1000=\(f1(Double(first.rssBytes) / mib)) ratio=\(f2(ratio))")
        figure("state_rss_1k_mib_\(run.maxResident)", f1(Double(first.rssBytes) / mib))
        figure("state_rss_all_mib_\(run.maxResident)", f1(Double(last.rssBytes) / mib))
        figure("state_rss_ratio_\(run.maxResident)", f2(ratio))
        figure("state_rss_peak_mib_\(run.maxResident)", f1(Double(run.hwmBytes) / mib))
        figure("state_memory_keys_per_s_\(run.maxResident)", String(format: "%.0f", Double(run.keys) / run.seconds))
    }
}
