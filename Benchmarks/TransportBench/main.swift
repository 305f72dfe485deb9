// The transport's floor: a raw ping-pong and a raw stream over one bidirectional gRPC stream
// through GRPCTransport (no routing, no dispatch), printed beside the same measurements made
// by `core-pingpong` (the identical exchange written in C directly against gRPC's C core) in
// the same run, as ratios.
//
//   transport-bench [--rounds N] [--stream N] [--baseline PATH]
import Foundation
import GRPCTransport

struct Options {
    var rounds = 20_000
    var warmup = 1_000
    var streamCount = 100_000
    var baseline: String? = nil

    init(_ arguments: [String]) {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--rounds": rounds = Int(iterator.next() ?? "") ?? rounds
            case "--stream": streamCount = Int(iterator.next() ?? "") ?? streamCount
            case "--baseline": baseline = iterator.next()
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

func runOurs(_ options: Options) async throws -> [String: Double] {
    let server = try Server(configuration: .init(address: "127.0.0.1:0", pollerThreads: 1), router: EchoRouter())
    let channel = Channel(configuration: .init(target: "127.0.0.1:\(server.port)"))
    let payload = MessageBuffer([UInt8](repeating: 0x61, count: 100))
    var figures: [String: Double] = [:]

    let pingPong = PingPongClient(payload: payload, total: options.rounds, warmup: options.warmup, streamMode: false)
    let call = try channel.makeStreamingCall(method: "/bench.Bench/PingPong", handler: pingPong)
    pingPong.start(call)
    pingPong.done.wait()
    call.halfClose()
    let sorted = pingPong.samples.sorted()
    figures["pingpong_p50_us"] = percentile(sorted, 0.50)
    figures["pingpong_p99_us"] = percentile(sorted, 0.99)
    figures["pingpong_mean_us"] = Double(sorted.reduce(0, +)) / Double(sorted.count) / 1000

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

func runBaseline(_ path: String, _ options: Options) -> [String: Double] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = ["\(options.rounds)", "\(options.streamCount)"]
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
let ours = try await runOurs(options)
let baseline = options.baseline.map { runBaseline($0, options) } ?? [:]
print("transport-bench: one stream on 127.0.0.1, 100-byte messages, \(options.rounds) ping-pongs, \(options.streamCount) streamed")
print("figure                 GRPCTransport   C core (C)   ratio ours/C")
for name in ["pingpong_p50_us", "pingpong_p99_us", "pingpong_mean_us", "stream_msgs_per_s"] {
    let value = ours[name] ?? .nan
    let base = baseline[name]
    let ratio = base.map { String(format: "%.2f", value / $0) } ?? "-"
    let baseText = base.map { String(format: "%12.1f", $0) } ?? String(repeating: " ", count: 11) + "-"
    print(String(format: "%-22@ %13.1f ", name as NSString, value) + baseText + "   " + ratio)
}
for name in ["pingpong_p50_us", "pingpong_p99_us", "pingpong_mean_us", "stream_msgs_per_s"] {
    print("\(name) ours=\(String(format: "%.1f", ours[name] ?? .nan)) core=\(baseline[name].map { String(format: "%.1f", $0) } ?? "-")")
}
