import AgentRuntime
import AgentTestSupport
import Foundation

/// `agentd run` as a child process (the binary the package built), with an INI file, a plugin
/// folder holding copies of the package's plugins, and its output in files.
final class AgentdRun {
    let process: Process
    let folder: String
    /// The embedded host's address, from its "listening on HOST:PORT" line.
    let address: String
    private let exited = AsyncCondition<Int32?>(nil)

    /// Starts `agentd run` with `ini` (its `[plugins] directory`, `[host] listen` and
    /// `[state]` are added) and waits for its "listening on" and "ready" lines.
    /// - Parameter state: the `[state]` section's lines (by default no store).
    /// - Parameter inProcess: `agentd run --in-process` (no supervisor: the runtime is this process).
    init(plugins: [(file: String, product: String)], state: String = "store = none", ini: String,
         inProcess: Bool = false) async throws {
        folder = NSTemporaryDirectory() + "agentd-run-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(folder)/plugins", withIntermediateDirectories: true)
        for plugin in plugins {
            try FileManager.default.copyItem(
                atPath: "\(RuntimeHarness.buildDirectory)/lib\(plugin.product).so", toPath: "\(folder)/plugins/\(plugin.file)")
        }
        try Data("""
            [plugins]
            directory = plugins
            [host]
            listen = 127.0.0.1:0
            [state]
            \(state)
            \(ini)
            """.utf8).write(to: URL(fileURLWithPath: "\(folder)/agentd.ini"))
        _ = FileManager.default.createFile(atPath: "\(folder)/stdout", contents: nil)
        _ = FileManager.default.createFile(atPath: "\(folder)/stderr", contents: nil)
        let process = Process()
        self.process = process
        process.executableURL = URL(fileURLWithPath: "\(RuntimeHarness.buildDirectory)/agentd")
        process.arguments = ["run", "--config", "\(folder)/agentd.ini"] + (inProcess ? ["--in-process"] : [])
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(folder)/stdout"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(folder)/stderr"))
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        let exited = self.exited
        process.terminationHandler = { ended in
            let status = ended.terminationStatus
            exited.mutate { $0 = $0 ?? status }
        }
        try process.run()
        var found: String?
        let folder = self.folder
        _ = await poll(timeout: .seconds(60)) {
            let text = Self.text(of: "\(folder)/stdout")
            let lines = text.split(separator: "\n")
            // "ready" once its plugins serve (with the supervisor, after the runtime process
            // registered them with the host: "listening on" comes before).
            guard lines.contains(where: { $0.hasPrefix("ready") }) else { return !process.isRunning }
            found = lines.first { $0.hasPrefix("listening on ") }.map { String($0.dropFirst(13)) }
            return found != nil || !process.isRunning
        }
        guard let found else {
            process.terminate()
            let text = Self.text(of: "\(folder)/stderr")
            throw RuntimeError("agentd run did not start: \(text)")
        }
        address = found
    }

    /// What it wrote to standard error so far.
    var stderr: String { Self.text(of: "\(folder)/stderr") }

    /// A file's text as it is now, read with POSIX calls (Foundation's file reading leaks its
    /// buffer, as LeakSanitizer sees it, when the file grows while it is read).
    static func text(of path: String) -> String {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return "" }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            guard count > 0 else { break }
            bytes.append(contentsOf: chunk[0..<count])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Its exit status, once it has exited within `timeout` (nil: still running).
    func exitStatus(within timeout: Duration) async -> Int32? {
        await exited.wait(timeout: timeout) { $0 != nil } ?? nil
    }

    /// Its resident memory now (`VmRSS` of `/proc/PID/status`), in bytes.
    var residentBytes: Int {
        let status = Self.text(of: "/proc/\(process.processIdentifier)/status")
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kib * 1024
    }

    /// Sends `signal` to it.
    func signal(_ signal: Int32) { kill(process.processIdentifier, signal) }

    /// Runs `body` with a started `agentd run`, then kills it if it still runs and removes its
    /// folder.
    static func with(plugins: [(file: String, product: String)], state: String = "store = none", ini: String,
                     inProcess: Bool = false, _ body: (AgentdRun) async throws -> Void) async throws {
        let run = try await AgentdRun(plugins: plugins, state: state, ini: ini, inProcess: inProcess)
        do {
            try await body(run)
        } catch {
            await run.remove()
            throw error
        }
        await run.remove()
    }

    /// Kills it if it still runs, and removes its folder.
    func remove() async {
        if process.isRunning { signal(SIGKILL) }
        // Foundation keeps a Process (and its termination handler) until waitUntilExit().
        if await exitStatus(within: .seconds(10)) != nil { process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: folder)
    }
}
