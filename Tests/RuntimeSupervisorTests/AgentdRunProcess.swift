#if canImport(Glibc)
import Glibc
#endif
import AgentRuntime
import AgentTestSupport
import Foundation

/// `agentd run` as the real binary (built next to the test bundle), with a plugin folder and an
/// INI file of its own: its stdout lines and its stderr as they come.
final class AgentdRunProcess: Sendable {
    /// Where swift build put agentd and the plugins.
    static var buildDirectory: String {
        URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent().path
    }

    let folder: String
    let pluginDirectory: String
    private let process: Process
    private let output = AsyncCondition<Output>(Output())

    struct Output: Sendable {
        var stdout = ""
        var stderr = ""
    }
    /// `HOST:PORT` from the `listening on` line.
    let address: String

    /// Starts `agentd run` with `plugins` (file name in the folder, file name in the build
    /// folder) and `extraConfig` appended to the INI file, with its embedded host or joining
    /// `host`; returns once it printed `ready`.
    init(plugins: [(file: String, built: String)], extraConfig: String = "", hostConfig: String = "", host: String? = nil) async throws {
        folder = NSTemporaryDirectory() + "agentd-supervisor-\(UUID().uuidString)"
        pluginDirectory = folder + "/plugins"
        try FileManager.default.createDirectory(atPath: pluginDirectory, withIntermediateDirectories: true)
        for (file, built) in plugins {
            try FileManager.default.copyItem(atPath: "\(Self.buildDirectory)/\(built)", toPath: "\(pluginDirectory)/\(file)")
        }
        let config = folder + "/agentd.ini"
        try """
            [host]
            listen = 127.0.0.1:0
            \(hostConfig)
            [plugins]
            directory = \(pluginDirectory)
            [log]
            level = info
            \(host.map { "[runtime]\nhost = \($0)" } ?? "")
            \(extraConfig)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        process = Process()
        process.executableURL = URL(fileURLWithPath: "\(Self.buildDirectory)/agentd")
        process.arguments = ["run", "--config", config]
        let stdout = Pipe()
        let stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        let output = self.output
        stdout.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { return }
            output.mutate { $0.stdout += String(decoding: data, as: UTF8.self) }
        }
        stderr.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { return }
            output.mutate { $0.stderr += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
        var listening: String?
        let process = self.process
        let ready = await poll(timeout: .seconds(60)) {
            guard process.isRunning else { return true }
            let lines = output.value.stdout.split(separator: "\n").map(String.init)
            listening = lines.first { $0.hasPrefix("listening on ") }.map { String($0.dropFirst("listening on ".count)) }
            return (listening != nil || host != nil) && lines.contains { $0.hasPrefix("ready:") }
        }
        guard ready, let listening = listening ?? host else {
            process.terminate()
            throw RuntimeError("agentd run did not get ready; stderr:\n\(output.value.stderr)")
        }
        address = listening
    }

    var stdoutLines: [String] { output.value.stdout.split(separator: "\n").map(String.init) }
    var stderr: String { output.value.stderr }
    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var exitStatus: Int32 { process.terminationStatus }

    /// The pids of the supervisor's children (the runtime), from every thread's list.
    var childPIDs: [Int32] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        return tasks.flatMap { task in
            Self.read("/proc/\(pid)/task/\(task)/children").split(separator: " ").compactMap { Int32($0) }
        }.sorted()
    }

    /// A /proc file's text, read with read(2): Foundation's file reading leaks its buffer for
    /// files whose size the kernel reports as 0 (LeakSanitizer says so under ASan).
    private static func read(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// SIGTERM, then waits for the end (SIGKILL after `timeout`, and false).
    @discardableResult
    func stop(timeout: Duration = .seconds(30)) async -> Bool {
        guard process.isRunning else { return true }
        kill(process.processIdentifier, SIGTERM)
        let ended = await poll(timeout: timeout, every: .milliseconds(20)) { !self.process.isRunning }
        if !ended { kill(process.processIdentifier, SIGKILL) }
        return ended
    }

    func removeFolder() {
        try? FileManager.default.removeItem(atPath: folder)
    }
}
