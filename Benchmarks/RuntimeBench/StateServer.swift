import AgentRuntime
import Foundation

// MARK: A stateful runtime in a process of its own
//
// The RPC latency comparison keeps the three runtimes (store off, sync = normal, sync = full)
// alive at once, so that their measurements can take turns slice by slice; but runtimes
// sharing a process slow each other's RPCs (each has its own completion queue, and gRPC's
// poller hands wake-ups between the threads of a process that has several), which would raise
// the baseline and flatter the ratio. So each runs in a process of its own, as in a
// deployment: this executable with --state-server MODE, which starts a ``StateRuntime``,
// prints `ready ADDRESS`, serves until its standard input closes, then prints its commits
// (`commits C writes W largest L`) and stops. The bench drives it over the network: RunCalls
// to its bench-caller agent, which times the calls inside that process. Two commands on its
// standard input, one line each, for timelines: `start` (the store's commit counter starts
// recording; answers `ok`) and `stop` (answers `timeline B1,B2,…;C1,…;E1,…`: the stamps of
// BEGIN, the commit hook and COMMIT returned, see ``CommitCounter/Timeline``).

/// The child's side.
func serveState(mode: StoreMode, folder: String, stateBytes: Int) async throws {
    let bench = try await StateRuntime(
        mode: mode, storePath: "\(folder)/agents-\(mode.rawValue)-\(getpid()).db", stateBytes: stateBytes)
    guard let address = bench.runtime.hostAddress else { fail("the runtime has no host address") }
    let mark = bench.commits?.commits ?? 0
    FileHandle.standardOutput.write(Data("ready \(address)\n".utf8))
    while let command = readLine() {
        switch command {
        case "start":
            bench.commits?.startTimeline()
            FileHandle.standardOutput.write(Data("ok\n".utf8))
        case "stop":
            let timeline = bench.commits?.stopTimeline() ?? CommitCounter.Timeline()
            let text = [timeline.begun, timeline.committing, timeline.committed]
                .map { $0.map(String.init).joined(separator: ",") }.joined(separator: ";")
            FileHandle.standardOutput.write(Data("timeline \(text)\n".utf8))
        default:
            FileHandle.standardOutput.write(Data("unknown command\n".utf8))
        }
    }
    // The runtime's own counts (its CheckpointWriter's); the largest batch from the commit hook.
    let statistics = bench.runtime.agentStatistics
    let largest = CommitSummary(bench.commits?.batches(since: mark) ?? []).largest
    FileHandle.standardOutput.write(Data("commits \(statistics.commits) writes \(statistics.checkpoints) largest \(largest)\n".utf8))
    await bench.stop()
}

/// The bench's side: the child process and a client connected to its embedded host.
final class StateServer: BenchStateAgents, TimelineSource {
    let mode: StoreMode
    let client: WorkerClient
    private let process: Process
    private let input: Pipe
    private let output: Pipe

    init(mode: StoreMode, folder: String, stateBytes: Int) throws {
        self.mode = mode
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["--state-server", mode.rawValue, "--state-dir", folder, "--state-bytes", "\(stateBytes)"]
        input = Pipe()
        output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        let line = Self.readLine(output.fileHandleForReading)
        guard let line, line.hasPrefix("ready ") else {
            process.terminate()
            throw RuntimeError("the state server (\(mode.rawValue)) did not start: \(line ?? "no output")")
        }
        client = try WorkerClient(address: String(line.dropFirst("ready ".count)))
    }

    func startTimeline() {
        input.fileHandleForWriting.write(Data("start\n".utf8))
        _ = Self.readLine(output.fileHandleForReading)
    }

    func stopTimeline() -> CommitCounter.Timeline? {
        guard mode != .off else { return nil }
        input.fileHandleForWriting.write(Data("stop\n".utf8))
        guard let line = Self.readLine(output.fileHandleForReading), line.hasPrefix("timeline ") else { return nil }
        let parts = line.dropFirst("timeline ".count).split(separator: ";", omittingEmptySubsequences: false)
            .map { $0.split(separator: ",").compactMap { UInt64($0) } }
        guard parts.count == 3 else { return nil }
        return CommitCounter.Timeline(begun: parts[0], committing: parts[1], committed: parts[2])
    }

    /// Stops the child; its commits.
    func stop() async -> CommitSummary? {
        await client.close()
        try? input.fileHandleForWriting.close()
        let line = Self.readLine(output.fileHandleForReading)
        process.waitUntilExit()
        let numbers = line?.split(separator: " ").compactMap { Int($0) } ?? []
        guard numbers.count == 3 else { return nil }
        return CommitSummary(commits: numbers[0], writes: numbers[1], empty: 0, largest: numbers[2])
    }

    /// One line of the child's output (nil at its end).
    private static func readLine(_ handle: FileHandle) -> String? {
        var bytes: [UInt8] = []
        while true {
            var byte: UInt8 = 0
            let count = read(handle.fileDescriptor, &byte, 1)
            if count <= 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }
}
