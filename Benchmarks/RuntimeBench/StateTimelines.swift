import AgentCore
@_spi(Benchmarks) import AgentRuntime
import AgentState
import Foundation
import GRPCTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: Where the time goes: every step of an RPC, and of one agent's events, stamped

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
