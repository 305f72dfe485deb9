import AgentCore
@_spi(Benchmarks) import AgentRuntime
import Foundation
import GRPCTransport
#if canImport(Glibc)
import Glibc
#endif

// MARK: In-process dispatch into a C plugin, without the network
//
// The bytes the host forwards for a publish — `agents.Message{cloudEvent}` for topic
// (bench-events, KEY), a 100-byte JSON `BenchMsg`, encoded as `WorkerClient.publish` encodes
// it (the host forwards a publish unchanged) — are encoded beforehand, then handed to
// `AgentRuntime.deliverFromHost`, which is what the connection does with a message it reads:
// `LocalRouter.receive` (protobuf-c decode, routing by subscription, the agent's mailbox, the
// hand-off to a worker thread), then the handler of agent bench-sink/KEY in libBenchAgents.so,
// which counts the event and stamps its arrival (CLOCK_MONOTONIC). Timed: first delivery →
// the last event's receipt, read back with a `GetStats` RPC once every event has been fed.

/// CPU time of this process so far (all threads), in nanoseconds.
func processCPUNs() -> UInt64 {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func ns(_ t: timeval) -> UInt64 { UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_usec) &* 1000 }
    return ns(usage.ru_utime) &+ ns(usage.ru_stime)
}

/// Encodes the publishes the host would forward, field by field as `OutboundCodec.event`
/// writes them (length-delimited fields only, so protobuf by hand is enough).
struct BenchEventEncoder {
    static let topicType = "bench-events"
    static let messageType = "BenchMsg"
    /// `{"text": "xxx…"}`: 100 bytes, as Benchmarks/compare publishes.
    static let payload: [UInt8] = Array(("{\"text\": \"" + String(repeating: "x", count: 88) + "\"}").utf8)
    /// Message ids in UUID form, as `OutboundCodec.newID()` makes them: a fixed prefix and a
    /// 12-hex-digit counter, patched into a per-key template.
    static let idPrefix = "b3ac4000-0000-4000-8000-"
    private static let placeholder = idPrefix + "000000000000"

    private var templates: [[UInt8]] = []
    private var idOffset: [Int] = []
    private var counter: UInt64 = 0

    init(keys: [String], topicType: String = Self.topicType) {
        precondition(Self.payload.count == 100)
        for key in keys {
            let template = Self.envelope(id: Self.placeholder, topicType: topicType, topicSource: key)
            let needle = Array(Self.placeholder.utf8)
            guard let offset = (0...(template.count - needle.count)).first(where: { template[$0..<($0 + needle.count)].elementsEqual(needle) })
            else { fail("bench event template without its id") }
            templates.append(template)
            idOffset.append(offset + Self.idPrefix.utf8.count)
        }
    }

    /// The runtime's own publish, the sender left "unknown" as a `WorkerClient` leaves it.
    static func envelope(id: String, topicType: String, topicSource: String) -> [UInt8] {
        payload.withUnsafeBytes {
            OutboundCodec.event(
                id: id, topicType: topicType, topicSource: topicSource, senderType: nil, senderKey: nil,
                messageType: messageType, contentType: "application/json", payload: $0)
        }
    }

    /// The next event for the key at `index`, with a fresh id.
    mutating func next(key index: Int) -> MessageBuffer {
        counter &+= 1
        let offset = idOffset[index]
        var number = counter
        templates[index].withUnsafeMutableBufferPointer { bytes in
            for position in stride(from: offset + 11, through: offset, by: -1) {
                let digit = UInt8(number & 0xF)
                bytes[position] = digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10
                number >>= 4
            }
        }
        return templates[index].withUnsafeBytes { MessageBuffer(copying: $0) }
    }
}

struct InProcessRun {
    var agents: Int
    var events: Int
    var counted: Int
    /// First delivery → the last event's receipt by the plugin.
    var seconds: Double
    /// The feeding loop alone: decode, route and queue on the calling thread.
    var feedSeconds: Double
    /// First delivery → the first event's receipt.
    var firstReceiptUs: Double
    /// Process CPU (all threads) from the first delivery until the counts were read back.
    var cpuSeconds: Double
    var lost: Int { max(0, events - counted) }
    var duplicated: Int { max(0, counted - events) }
    var nsPerEvent: Double { seconds * 1e9 / Double(events) }
    var eventsPerSecond: Double { Double(events) / seconds }
}

struct InProcessFigures {
    var events: Int
    var mailboxLimit: Int
    var workers: Int
    var single: [InProcessRun] = []
    var parallel: [InProcessRun] = []
    /// Decode and routing alone: events to a topic no agent subscribes to (ns per event).
    var unroutedNs: [Double] = []
}

/// A runtime with its embedded host serving libBenchAgents.so; the events go in through
/// `deliverFromHost`, the `GetStats` RPCs through a `WorkerClient` and the host.
final class InProcessBench {
    let runtime: AgentRuntime
    let client: WorkerClient
    let directory: String

    init(mailboxLimit: Int) async throws {
        directory = NSTemporaryDirectory() + "runtime-bench-inprocess-\(UUID().uuidString.prefix(8).lowercased())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: Products.library("BenchAgents"), toPath: "\(directory)/libBenchAgents.so")
        runtime = try AgentRuntime(
            configuration: .init(
                embeddedHost: .init(listen: "127.0.0.1:0"), rpcTimeout: .seconds(30), pluginDirectory: directory,
                watchPlugins: false, mailboxLimit: mailboxLimit),
            logger: LogStore().logger())
        try await runtime.start()
        guard let address = runtime.hostAddress else { fail("the runtime has no host address") }
        client = try WorkerClient(address: address)
    }

    func stop() async {
        await client.close()
        await runtime.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    func stats(_ key: String) async throws -> (count: Int, first: UInt64, last: UInt64) {
        let answer = try await client.send(emptyJSON, messageType: "GetStats", to: AgentID(type: "bench-sink", key: key))
        guard let count = jsonInteger(answer.payload, "count"), let first = jsonInteger(answer.payload, "first_ns"),
              let last = jsonInteger(answer.payload, "last_ns")
        else { throw RuntimeError("unexpected GetStats answer: \(String(decoding: answer.payload, as: UTF8.self))") }
        return (count, UInt64(max(0, first)), UInt64(max(0, last)))
    }

    /// Feeds `events` events round-robin over `keys` (agents created beforehand by a first
    /// `GetStats`, so that their creation is not timed), then reads the counts back. A
    /// `GetStats` sent after the feed waits in each mailbox behind every event fed before it,
    /// so one read per key sees them all unless some were lost; a short count is read again
    /// until it stops moving for 5 s.
    func run(keys: [String], events: Int, encoder: inout BenchEventEncoder, keyIndexBase: Int) async throws -> InProcessRun {
        for key in keys {
            let before = try await stats(key)
            if before.count != 0 { throw RuntimeError("bench-sink/\(key) had counted \(before.count) events already") }
        }
        var messages: [MessageBuffer] = []
        messages.reserveCapacity(events)
        for index in 0..<events { messages.append(encoder.next(key: keyIndexBase + index % keys.count)) }

        let cpuStart = processCPUNs()
        let start = nowNs()
        for message in messages { runtime.deliverFromHost(message) }
        let fed = nowNs()

        var counted = 0, first = UInt64.max, last: UInt64 = 0
        var previous = -1, progressAt = nowNs()
        while true {
            counted = 0
            first = .max
            last = 0
            for key in keys {
                let s = try await stats(key)
                counted += s.count
                first = min(first, s.first)
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
        let cpu = processCPUNs() - cpuStart
        // Freed only now: freeing them while the handlers run would take CPU from them.
        messages.removeAll()
        return InProcessRun(
            agents: keys.count, events: events, counted: counted,
            seconds: Double(last > start ? last - start : 0) / 1e9, feedSeconds: Double(fed - start) / 1e9,
            firstReceiptUs: first >= start && first != .max ? Double(first - start) / 1000 : .nan,
            cpuSeconds: Double(cpu) / 1e9)
    }
}

/// Runs `options.runs` rounds, each one agent (1 key) then `options.keys` agents, after an
/// untimed warm-up of both shapes; one runtime throughout, fresh keys per run.
func runInProcess(_ options: Options) async throws -> InProcessFigures {
    let events = options.inprocessEvents
    // The whole burst is queued before most of it is handled (feeding is faster than one
    // agent's handlers): the mailbox limit is raised above it so that nothing is refused.
    let mailboxLimit = max(10_000, events + 1_000)
    let bench = try await InProcessBench(mailboxLimit: mailboxLimit)
    var figures = InProcessFigures(events: events, mailboxLimit: mailboxLimit, workers: bench.runtime.configuration.workers)
    let parallel = max(1, options.keys)
    var allKeys: [String] = ["warm-single"] + (0..<parallel).map { "warm-k\($0)" }
    for run in 0..<options.runs {
        allKeys.append("r\(run)-single")
        allKeys += (0..<parallel).map { "r\(run)-k\($0)" }
    }
    var encoder = BenchEventEncoder(keys: allKeys)
    let warmup = max(1_000, events / 10)
    _ = try await bench.run(keys: ["warm-single"], events: warmup, encoder: &encoder, keyIndexBase: 0)
    _ = try await bench.run(keys: Array(allKeys[1...parallel]), events: warmup, encoder: &encoder, keyIndexBase: 1)
    for run in 0..<options.runs {
        let base = (1 + parallel) * (run + 1)
        let single = try await bench.run(keys: [allKeys[base]], events: events, encoder: &encoder, keyIndexBase: base)
        figures.single.append(single)
        let many = try await bench.run(keys: Array(allKeys[(base + 1)...(base + parallel)]), events: events,
                                       encoder: &encoder, keyIndexBase: base + 1)
        figures.parallel.append(many)
        // The same bytes to a topic type nothing subscribes to: decoded, matched against the
        // subscriptions, dropped — the part of the cost before the mailbox.
        var unrouted = BenchEventEncoder(keys: ["r\(run)-unrouted"], topicType: "bench-unrouted")
        let messages = (0..<events).map { _ in unrouted.next(key: 0) }
        let start = nowNs()
        for message in messages { bench.runtime.deliverFromHost(message) }
        figures.unroutedNs.append(Double(nowNs() - start) / Double(events))
        for r in [single, many] {
            note(String(format: "in-process run %d, %d agent(s): %d fed, %d counted; first delivery → last receipt %.3f s (%.0f ns/event, %.0f events/s); feeding alone %.3f s; first receipt after %.1f µs; process CPU %.3f s",
                        run + 1, r.agents, r.events, r.counted, r.seconds, r.nsPerEvent, r.eventsPerSecond,
                        r.feedSeconds, r.firstReceiptUs, r.cpuSeconds))
        }
        note(String(format: "in-process run %d, decode + routing alone (topic nobody subscribes to): %.0f ns/event",
                    run + 1, figures.unroutedNs.last!))
    }
    await bench.stop()
    return figures
}
