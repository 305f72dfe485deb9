// The transport's floor: a raw ping-pong and a raw stream over one bidirectional gRPC stream
// through GRPCTransport (no routing, no dispatch), printed beside the same measurements made
// by `core-pingpong` (the identical exchange written in C directly against gRPC's C core) in
// the same run, as ratios.
//
// The ping-pong runs three times: with the echo server in this process (pingpong_*), with it in
// a child process (xpingpong_*: this binary started again with --serve; for the C baseline,
// `core-pingpong --serve` and `core-pingpong --connect PORT`), and through a relay
// (relaypingpong_*: the echo server in one child, a relay in another, this binary started again
// with --relay-to; no C baseline). The second is the floor of an exchange between processes; the
// third is the topology of an RPC through the host (caller → host → receiving worker → host →
// caller, three processes) with no routing or dispatch: the relay passes every message on, as
// is, from the poller thread it arrived on, as the host forwards.
//
//   transport-bench [--rounds N] [--stream N] [--baseline PATH] [--no-cross] [--no-relay]
//   transport-bench --serve     the echo server alone: prints `listening on 127.0.0.1:PORT`,
//                               serves until stdin reaches EOF or SIGTERM arrives
//   transport-bench --unix      also the cross-process ping-pong over a unix socket
//                               (uxpingpong_*), against loopback TCP's (what `agentd run`'s
//                               runtime process could join its supervisor's host over)
//   transport-bench --relay-to HOST:PORT
//                               the relay alone: prints `listening on 127.0.0.1:PORT`; for each
//                               stream it serves it opens one to HOST:PORT (same method) and
//                               passes messages both ways; until stdin EOF or SIGTERM
import Dispatch
import Foundation
import GRPCTransport

struct Options {
    var rounds = 20_000
    var warmup = 1_000
    var streamCount = 100_000
    var baseline: String? = nil
    var serve = false
    var relayTo: String? = nil
    var crossProcess = true
    var relay = true
    var unix = false
    /// --serve on this unix socket path instead of 127.0.0.1:0.
    var serveUnix: String? = nil

    init(_ arguments: [String]) {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--rounds": rounds = Int(iterator.next() ?? "") ?? rounds
            case "--stream": streamCount = Int(iterator.next() ?? "") ?? streamCount
            case "--baseline": baseline = iterator.next()
            case "--serve": serve = true
            case "--relay-to": relayTo = iterator.next()
            case "--no-cross": crossProcess = false
            case "--no-relay": relay = false
            case "--unix": unix = true
            case "--serve-unix": serveUnix = iterator.next()
            default:
                FileHandle.standardError.write("unknown argument \(argument)\n".data(using: .utf8)!)
                exit(2)
            }
        }
        if baseline == nil {
            let sibling = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("core-pingpong").path
            if FileManager.default.isExecutableFile(atPath: sibling) { baseline = sibling }
        }
    }
}

/// Echoes every message on the stream.
final class EchoRouter: CallRouter, ServerCallHandler {
    func handler(for call: ServerCall) -> (any ServerCallHandler)? { self }
    func call(_ call: ServerCall, didReceive message: MessageBuffer) { call.send(message) }
    func callDidHalfClose(_ call: ServerCall) { call.finish() }
}

/// Drives the client side on the poller thread: each reply triggers the next send, with no
/// hop to another thread (this is the path the runtime's data plane takes).
final class PingPongClient: ClientCallHandler, @unchecked Sendable {
    // @unchecked Sendable: all mutable state is touched only on the call's poller thread
    // (callbacks) or before the first send / after `done` opens.
    let payload: MessageBuffer
    let total: Int
    var sent = 0
    var received = 0
    var lastSend: UInt64 = 0
    var samples: [UInt64] = []
    let warmup: Int
    let streamMode: Bool
    var streamStart: UInt64 = 0
    var streamEnd: UInt64 = 0
    let done = DispatchSemaphore(value: 0)
    weak var call: ClientCall?

    init(payload: MessageBuffer, total: Int, warmup: Int, streamMode: Bool) {
        self.payload = payload
        self.total = total
        self.warmup = warmup
        self.streamMode = streamMode
        samples.reserveCapacity(total)
    }

    func start(_ call: ClientCall) {
        self.call = call
        if streamMode {
            streamStart = DispatchTime.now().uptimeNanoseconds
            for _ in 0..<total { call.send(payload) }
        } else {
            lastSend = DispatchTime.now().uptimeNanoseconds
            call.send(payload)
        }
    }

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        received += 1
        if streamMode {
            if received == total {
                streamEnd = DispatchTime.now().uptimeNanoseconds
                done.signal()
            }
            return
        }
        let now = DispatchTime.now().uptimeNanoseconds
        if received > warmup { samples.append(now - lastSend) }
        if received == total + warmup {
            done.signal()
            return
        }
        lastSend = DispatchTime.now().uptimeNanoseconds
        call.send(payload)
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        if received < (streamMode ? total : total + warmup) {
            FileHandle.standardError.write("stream ended early: \(status)\n".data(using: .utf8)!)
            exit(1)
        }
    }
}

func percentile(_ sorted: [UInt64], _ p: Double) -> Double {
    Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000
}

/// The ping-pong on one new stream of `channel`: figures named `prefix` + `_p50_us` etc.
func runPingPong(_ channel: Channel, _ options: Options, prefix: String) throws -> [String: Double] {
    let payload = MessageBuffer([UInt8](repeating: 0x61, count: 100))
    let pingPong = PingPongClient(payload: payload, total: options.rounds, warmup: options.warmup, streamMode: false)
    let call = try channel.makeStreamingCall(method: "/bench.Bench/PingPong", handler: pingPong)
    pingPong.start(call)
    pingPong.done.wait()
    call.halfClose()
    let sorted = pingPong.samples.sorted()
    return [
        "\(prefix)_p50_us": percentile(sorted, 0.50),
        "\(prefix)_p99_us": percentile(sorted, 0.99),
        "\(prefix)_mean_us": Double(sorted.reduce(0, +)) / Double(sorted.count) / 1000,
    ]
}

func runOurs(_ options: Options) async throws -> [String: Double] {
    let server = try Server(configuration: .init(address: "127.0.0.1:0", pollerThreads: 1), router: EchoRouter())
    let channel = Channel(configuration: .init(target: "127.0.0.1:\(server.port)"))
    let payload = MessageBuffer([UInt8](repeating: 0x61, count: 100))
    var figures = try runPingPong(channel, options, prefix: "pingpong")

    let stream = PingPongClient(payload: payload, total: options.streamCount, warmup: 0, streamMode: true)
    let streamCall = try channel.makeStreamingCall(method: "/bench.Bench/Stream", handler: stream)
    stream.start(streamCall)
    stream.done.wait()
    streamCall.halfClose()
    figures["stream_msgs_per_s"] = Double(options.streamCount) / (Double(stream.streamEnd - stream.streamStart) / 1e9)

    await channel.shutdown()
    await server.shutdown()
    return figures
}

/// The same ping-pong against an echo server in a child process (this binary with --serve):
/// the xpingpong_* figures.
func runOursCrossProcess(_ options: Options) async throws -> [String: Double] {
    guard let child = ServerProcess.start([CommandLine.arguments[0], "--serve"]) else { return [:] }
    let channel = Channel(configuration: .init(target: "127.0.0.1:\(child.port)"))
    let figures = try runPingPong(channel, options, prefix: "xpingpong")
    await channel.shutdown()
    child.stop()
    return figures
}

/// The cross-process ping-pong over a unix socket (--unix): the uxpingpong_* figures.
func runOursCrossProcessUnix(_ options: Options) async throws -> [String: Double] {
    let path = NSTemporaryDirectory() + "transport-bench-\(getpid()).sock"
    unlink(path)
    defer { unlink(path) }
    guard let child = ServerProcess.start([CommandLine.arguments[0], "--serve", "--serve-unix", path]) else { return [:] }
    let channel = Channel(configuration: .init(target: "unix:\(path)"))
    let figures = try runPingPong(channel, options, prefix: "uxpingpong")
    await channel.shutdown()
    child.stop()
    return figures
}

/// The same ping-pong through a relay: an echo server in one child process (--serve) and a
/// relay to it in another (--relay-to), three processes as in an RPC through the host: the
/// relaypingpong_* figures.
func runOursRelay(_ options: Options) async throws -> [String: Double] {
    guard let echo = ServerProcess.start([CommandLine.arguments[0], "--serve"]) else { return [:] }
    defer { echo.stop() }
    guard let relay = ServerProcess.start([CommandLine.arguments[0], "--relay-to", "127.0.0.1:\(echo.port)"]) else {
        return [:]
    }
    defer { relay.stop() }
    let channel = Channel(configuration: .init(target: "127.0.0.1:\(relay.port)"))
    let figures = try runPingPong(channel, options, prefix: "relaypingpong")
    await channel.shutdown()
    return figures
}

/// One stream through the relay: the client's stream (`downstream`, served here) and the one
/// opened for it to the upstream server. Each message is sent on from the callback that received
/// it, on that call's poller thread (the server's for the client's messages, the channel's for
/// the upstream's), with no hop to another thread.
final class RelayStream: ServerCallHandler, ClientCallHandler, @unchecked Sendable {
    // @unchecked Sendable: `upstream` is written once, in RelayRouter.handler(for:), before the
    // handler is returned to the server, and read only in the downstream call's callbacks, which
    // start after the server has taken the handler (ServerCall stores it and reads it back under
    // its lock, which orders the write before every read). The rest is immutable.
    let downstream: ServerCall
    var upstream: ClientCall?

    init(downstream: ServerCall) { self.downstream = downstream }

    // The client's side.
    func call(_ call: ServerCall, didReceive message: MessageBuffer) { upstream?.send(message) }
    func callDidHalfClose(_ call: ServerCall) { upstream?.halfClose() }
    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        if cancelled { upstream?.cancel() }
    }

    // The upstream's side.
    func call(_ call: ClientCall, didReceive message: MessageBuffer) { downstream.send(message) }
    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        downstream.finish(status, trailers: trailers)
    }
}

/// Opens, for each incoming stream, one stream with the same method on `upstream`.
final class RelayRouter: CallRouter {
    let upstream: Channel

    init(upstream: Channel) { self.upstream = upstream }

    func handler(for call: ServerCall) -> (any ServerCallHandler)? {
        let relay = RelayStream(downstream: call)
        do {
            relay.upstream = try upstream.makeStreamingCall(method: call.method, handler: relay)
        } catch {
            call.finish(Status(.unavailable, "cannot open the upstream stream: \(error)"))
            return nil
        }
        return relay
    }
}

/// --relay-to HOST:PORT: the relay — a server and a channel to HOST:PORT sharing one completion
/// queue with one poller thread, so that both sides of a forward run on one thread, as in the
/// host — until stdin reaches EOF or SIGTERM arrives.
func relay(to target: String) async throws {
    let queues = CompletionQueueGroup(count: 1, name: "relay")
    let channel = Channel(configuration: .init(target: target), queues: queues)
    let server = try Server(configuration: .init(address: "127.0.0.1:0", pollerThreads: 1),
                            router: RelayRouter(upstream: channel), queues: queues)
    print("listening on 127.0.0.1:\(server.port)")
    fflush(nil)
    waitForStdinEOFOrSIGTERM()
    await server.shutdown()
    await channel.shutdown()
    queues.shutdown()
}

/// --serve: the echo server (as in the in-process run: one poller thread) until stdin reaches
/// EOF or SIGTERM arrives.
func serve(unix path: String?) async throws {
    let server = try Server(configuration: .init(address: path.map { "unix:\($0)" } ?? "127.0.0.1:0", pollerThreads: 1), router: EchoRouter())
    print("listening on 127.0.0.1:\(server.port)")
    fflush(nil)
    waitForStdinEOFOrSIGTERM()
    await server.shutdown()
}

/// Blocks until stdin reaches EOF (the parent closed its end of the pipe, or exited) or
/// SIGTERM arrives: how the --serve and --relay-to children end.
func waitForStdinEOFOrSIGTERM() {
    let stop = DispatchSemaphore(value: 0)
    signal(SIGTERM, SIG_IGN)
    let terminate = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
    terminate.setEventHandler { stop.signal() }
    terminate.resume()
    DispatchQueue.global().async {
        var buffer = [UInt8](repeating: 0, count: 256)
        while true {
            let count = read(0, &buffer, buffer.count)
            if count == 0 || (count < 0 && errno != EINTR) { break }
        }
        stop.signal()
    }
    stop.wait()
    terminate.cancel()
}

func runBaseline(_ path: String, _ options: Options) -> [String: Double] {
    runBaseline(path, ["\(options.rounds)", "\(options.streamCount)"])
}

/// The C baseline's cross-process ping-pong: `core-pingpong --serve` in one child process,
/// `core-pingpong --connect PORT ROUNDS` in another; its pingpong_* figures as xpingpong_*.
func runBaselineCrossProcess(_ path: String, _ options: Options) -> [String: Double] {
    guard let child = ServerProcess.start([path, "--serve"]) else { return [:] }
    defer { child.stop() }
    let figures = runBaseline(path, ["--connect", "\(child.port)", "\(options.rounds)"])
    return Dictionary(uniqueKeysWithValues: figures.map { ("x" + $0.key, $0.value) })
}

func runBaseline(_ path: String, _ arguments: [String]) -> [String: Double] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    do { try process.run() } catch {
        FileHandle.standardError.write("cannot run baseline \(path): \(error)\n".data(using: .utf8)!)
        return [:]
    }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    var figures: [String: Double] = [:]
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
        let parts = line.split(separator: "=", maxSplits: 1)
        if parts.count == 2, let value = Double(parts[1]) { figures[String(parts[0])] = value }
    }
    return figures
}

let options = Options(Array(CommandLine.arguments.dropFirst()))
if options.serve {
    try await serve(unix: options.serveUnix)
    exit(0)
}
if let target = options.relayTo {
    try await relay(to: target)
    exit(0)
}
var ours = try await runOurs(options)
var baseline = options.baseline.map { runBaseline($0, options) } ?? [:]
var names = ["pingpong_p50_us", "pingpong_p99_us", "pingpong_mean_us", "stream_msgs_per_s"]
if options.crossProcess {
    ours.merge(try await runOursCrossProcess(options)) { $1 }
    if let path = options.baseline { baseline.merge(runBaselineCrossProcess(path, options)) { $1 } }
    names += ["xpingpong_p50_us", "xpingpong_p99_us", "xpingpong_mean_us"]
}
if options.unix {
    ours.merge(try await runOursCrossProcessUnix(options)) { $1 }
    names += ["uxpingpong_p50_us", "uxpingpong_p99_us", "uxpingpong_mean_us"]
}
if options.relay {
    ours.merge(try await runOursRelay(options)) { $1 }
    names += ["relaypingpong_p50_us", "relaypingpong_p99_us", "relaypingpong_mean_us"]
}
print("transport-bench: one stream on 127.0.0.1, 100-byte messages, \(options.rounds) ping-pongs, \(options.streamCount) streamed")
if options.crossProcess {
    print("pingpong: echo server in the same process; xpingpong: echo server in a child process (--serve)")
}
if options.unix {
    print("uxpingpong: the same as xpingpong over a unix socket instead of loopback TCP")
    for figure in ["p50_us", "p99_us", "mean_us"] {
        let tcp = ours["xpingpong_" + figure] ?? .nan, unix = ours["uxpingpong_" + figure] ?? .nan
        print("unix/tcp \(figure): \(String(format: "%.1f / %.1f = %.2f", unix, tcp, unix / tcp))")
    }
}
if options.relay {
    print("relaypingpong: client → relay child (--relay-to) → echo server child (--serve) → back, three processes")
}
print("figure                 GRPCTransport   C core (C)   ratio ours/C")
for name in names {
    let value = ours[name] ?? .nan
    let base = baseline[name]
    let ratio = base.map { String(format: "%.2f", value / $0) } ?? "-"
    let baseText = base.map { String(format: "%12.1f", $0) } ?? String(repeating: " ", count: 11) + "-"
    // (Padded here: swift-corelibs-foundation ignores the width of a %@.)
    print(name.padding(toLength: 22, withPad: " ", startingAt: 0) + String(format: " %13.1f ", value) + baseText + "   " + ratio)
}
for name in names {
    print("\(name) ours=\(String(format: "%.1f", ours[name] ?? .nan)) core=\(baseline[name].map { String(format: "%.1f", $0) } ?? "-")")
}
