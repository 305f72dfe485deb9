import AgentCore
import AgentRuntime
import Foundation
import GRPCTransport
import Synchronization

// MARK: The raw transport baseline (as in transport-bench)

/// Echoes every message on the stream.
final class EchoRouter: CallRouter, ServerCallHandler {
    func handler(for call: ServerCall) -> (any ServerCallHandler)? { self }
    func call(_ call: ServerCall, didReceive message: MessageBuffer) { call.send(message) }
    func callDidHalfClose(_ call: ServerCall) { call.finish() }
}

/// transport-bench's ping-pong: each reply triggers the next send on the poller thread.
final class PollerPingPong: ClientCallHandler, @unchecked Sendable {
    // @unchecked Sendable: mutable state is touched only on the call's poller thread, or
    // before the first send / after `done` opens.
    let payload: MessageBuffer
    let total: Int
    let warmup: Int
    var received = 0
    var lastSend: UInt64 = 0
    var samples: [UInt64] = []
    let done = DispatchSemaphore(value: 0)

    init(payload: MessageBuffer, total: Int, warmup: Int) {
        self.payload = payload
        self.total = total
        self.warmup = warmup
        samples.reserveCapacity(total)
    }

    func start(_ call: ClientCall) {
        lastSend = nowNs()
        call.send(payload)
    }

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        received += 1
        let now = nowNs()
        if received > warmup { samples.append(now - lastSend) }
        if received == total + warmup {
            done.signal()
            return
        }
        lastSend = nowNs()
        call.send(payload)
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        if received < total + warmup { fail("raw ping-pong stream ended early: \(status)") }
    }
}

/// The same ping-pong driven from a Swift task that awaits each reply (a continuation resumed
/// from the poller thread): the shape of `WorkerClient.send`, without host or runtime.
final class AwaitedPingPong: ClientCallHandler, Sendable {
    let pending = Mutex<CheckedContinuation<Void, Never>?>(nil)

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        pending.withLock { slot -> CheckedContinuation<Void, Never>? in
            defer { slot = nil }
            return slot
        }?.resume()
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        pending.withLock { slot -> CheckedContinuation<Void, Never>? in
            defer { slot = nil }
            return slot
        }.map { _ in fail("awaited ping-pong stream ended early: \(status)") }
    }
}

final class RawTransport {
    let server: Server
    let channel: Channel
    let payload = MessageBuffer([UInt8](repeating: 0x61, count: 100))

    init() throws {
        server = try Server(configuration: .init(address: "127.0.0.1:0", pollerThreads: 1), router: EchoRouter())
        channel = Channel(configuration: .init(target: "127.0.0.1:\(server.port)"))
    }

    func pollerPingPong(rounds: Int, warmup: Int) throws -> [UInt64] {
        let pingPong = PollerPingPong(payload: payload, total: rounds, warmup: warmup)
        let call = try channel.makeStreamingCall(method: "/bench.Bench/PingPong", handler: pingPong)
        pingPong.start(call)
        pingPong.done.wait()
        call.halfClose()
        return pingPong.samples
    }

    func awaitedPingPong(rounds: Int, warmup: Int) async throws -> [UInt64] {
        let handler = AwaitedPingPong()
        let call = try channel.makeStreamingCall(method: "/bench.Bench/PingPong", handler: handler)
        var samples: [UInt64] = []
        samples.reserveCapacity(rounds)
        let payload = self.payload
        for round in 0..<(warmup + rounds) {
            let start = nowNs()
            await withCheckedContinuation { continuation in
                handler.pending.withLock { $0 = continuation }
                call.send(payload)
            }
            if round >= warmup { samples.append(nowNs() - start) }
        }
        call.halfClose()
        return samples
    }

    func shutdown() async {
        await channel.shutdown()
        await server.shutdown()
    }
}

// MARK: Through the host and the runtime

/// Sequential `Get` RPCs to versioned/`key`: WorkerClient → host → runtime → plugin → back.
func rpcRoundTrips(_ client: WorkerClient, key: String, rounds: Int, warmup: Int) async throws -> [UInt64] {
    var samples: [UInt64] = []
    samples.reserveCapacity(rounds)
    let target = AgentID(type: "versioned", key: key)
    for round in 0..<(warmup + rounds) {
        let start = nowNs()
        _ = try await client.send(emptyJSON, messageType: "Get", to: target)
        if round >= warmup { samples.append(nowNs() - start) }
    }
    return samples
}

struct ThroughputResult {
    var events: Int
    var counted: Int
    /// From the first publish to the poll that saw every event counted.
    var seconds: Double
    /// The publish loop alone (what the client queued).
    var publishSeconds: Double
    var lost: Int { max(0, events - counted) }
    var duplicated: Int { max(0, counted - events) }
}

/// Publishes `events` events round-robin over `keys` on topic type `versioned-events`, then
/// polls `Get` on every key until the counts add up (or stop moving for 5 s), and reads them
/// once more 200 ms later to catch duplicates.
func eventThroughput(_ client: WorkerClient, events: Int, keys: [String]) async throws -> ThroughputResult {
    let topics = keys.map { TopicID(type: "versioned-events", source: $0) }
    let start = nowNs()
    for index in 0..<events {
        try await client.publish(emptyJSON, messageType: "Tick", to: topics[index % topics.count], waitingUpTo: .seconds(30))
    }
    let published = nowNs()
    var counted = 0
    var lastProgress = nowNs()
    var end = nowNs()
    while true {
        var sum = 0
        for key in keys { sum += try await client.versionedGet(key).count }
        end = nowNs()
        if sum != counted {
            counted = sum
            lastProgress = end
        }
        if counted >= events || end - lastProgress > 5_000_000_000 { break }
        try await Task.sleep(for: .milliseconds(1))
    }
    try await Task.sleep(for: .milliseconds(200))
    var final = 0
    for key in keys { final += try await client.versionedGet(key).count }
    return ThroughputResult(
        events: events, counted: final, seconds: Double(end - start) / 1e9, publishSeconds: Double(published - start) / 1e9)
}

struct DispatchFigures {
    var rpcP50: [Double] = [], rpcP99: [Double] = []
    /// The raw ping-pong alone in the process (what transport-bench measures).
    var rawP50: [Double] = [], rawP99: [Double] = []
    /// The raw ping-pong while a runtime and its embedded host sit idle in the same process.
    var inprocP50: [Double] = [], inprocP99: [Double] = []
    /// The same, awaited from a task.
    var awaitedP50: [Double] = [], awaitedP99: [Double] = []
    var throughput: [ThroughputResult] = []
}

/// Each run: the raw ping-pong alone; then, with a runtime serving versioned v1 started, the
/// raw ping-pong again (poller-driven and awaited), the RPCs, and the event throughput; then
/// the runtime stops. Each run starts with an untimed pass of each measurement.
func runDispatch(_ options: Options) async throws -> DispatchFigures {
    var figures = DispatchFigures()
    let raw = try RawTransport()
    let warmup = max(200, options.rpcCalls / 10)
    func record(_ samples: [UInt64], _ p50: inout [Double], _ p99: inout [Double]) {
        let sorted = samples.sorted()
        p50.append(quantileUs(sorted, 0.5))
        p99.append(quantileUs(sorted, 0.99))
    }
    for run in 0..<options.runs {
        _ = try raw.pollerPingPong(rounds: options.rpcCalls / 2, warmup: 0)
        record(try raw.pollerPingPong(rounds: options.rpcCalls, warmup: warmup), &figures.rawP50, &figures.rawP99)

        let bench = try await BenchRuntime.start(plugins: [("versioned.so", "VersionedPluginV1")], watch: false)
        let client = try bench.client()
        _ = try await rpcRoundTrips(client, key: "rpc", rounds: options.rpcCalls / 2, warmup: 0)
        _ = try raw.pollerPingPong(rounds: options.rpcCalls / 2, warmup: 0)
        record(try raw.pollerPingPong(rounds: options.rpcCalls, warmup: warmup), &figures.inprocP50, &figures.inprocP99)
        record(try await raw.awaitedPingPong(rounds: options.rpcCalls, warmup: warmup), &figures.awaitedP50, &figures.awaitedP99)
        record(try await rpcRoundTrips(client, key: "rpc", rounds: options.rpcCalls, warmup: warmup), &figures.rpcP50, &figures.rpcP99)
        note(String(format: "dispatch run %d: rpc p50 %.1f µs p99 %.1f µs; raw alone p50 %.1f µs p99 %.1f µs; raw beside the runtime p50 %.1f µs p99 %.1f µs; awaited p50 %.1f µs p99 %.1f µs",
                    run + 1, figures.rpcP50.last!, figures.rpcP99.last!, figures.rawP50.last!, figures.rawP99.last!,
                    figures.inprocP50.last!, figures.inprocP99.last!, figures.awaitedP50.last!, figures.awaitedP99.last!))

        let keys = (0..<options.keys).map { "t\(run)-k\($0)" }
        let result = try await eventThroughput(client, events: options.events, keys: keys)
        figures.throughput.append(result)
        note(String(format: "events run %d: %d published, %d counted in %.3f s (publish loop %.3f s): %.0f msgs/s",
                    run + 1, result.events, result.counted, result.seconds, result.publishSeconds,
                    Double(result.events) / result.seconds))
        await bench.stop([client])
    }
    await raw.shutdown()
    return figures
}
