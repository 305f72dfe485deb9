import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Checks a plugin in a separate process (`agentd plugin check FILE`) before the runtime
/// loads it: a plugin that crashes while loading (its constructors or its entry) takes down
/// only the probe, and the runtime refuses it with the reason.
public struct PluginProbe: Sendable {
    /// The `agentd` executable to run as `EXECUTABLE plugin check --probe FILE`.
    public var executable: String
    /// How long the probe may take.
    public var timeout: Duration

    public init(executable: String, timeout: Duration = .seconds(10)) {
        self.executable = executable
        self.timeout = timeout
    }

    /// What the probe found.
    public enum Verdict: Sendable, Equatable {
        /// Loaded and valid; the content hash it checked.
        case passed(hash: String)
        /// Refused, with the reason.
        case refused(String)
    }

    /// Runs the probe on `path`.
    public func check(_ path: String) -> Verdict {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["plugin", "check", "--probe", path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        // A crash is the expected way for a bad plugin to fail here: no backtrace, just exit.
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        process.environment = environment
        do {
            try process.run()
        } catch {
            return .refused("the plugin probe \(executable) could not run: \(error.localizedDescription)")
        }
        let pid = process.processIdentifier
        let (seconds, attoseconds) = timeout.components
        let deadline = DispatchTime.now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000))
        let finished = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in finished.signal() }
        if !process.isRunning { finished.signal() }
        // waitUntilExit() also releases what Foundation's Process keeps until it is called (its
        // run-loop source holds the Process: without it, every probe leaks its Process, pipe and
        // arguments). Once the termination handler has run it returns at once.
        defer { process.waitUntilExit() }
        if finished.wait(timeout: deadline) == .timedOut {
            kill(pid, SIGKILL)
            return .refused("loading it did not finish within \(timeout) (in a probe process, which was killed)")
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        if process.terminationReason == .uncaughtSignal {
            let signal = process.terminationStatus
            let name = String(cString: strsignal(signal))
            return .refused("it crashed while loading (signal \(signal), \(name)) — in a probe process; the runtime did not load it")
        }
        // The probe prints "ok HASH" or "refused REASON" as its last line.
        let last = text.split(separator: "\n").last.map(String.init) ?? ""
        if process.terminationStatus == 0, last.hasPrefix("ok ") {
            return .passed(hash: String(last.dropFirst(3)))
        }
        if last.hasPrefix("refused ") { return .refused(String(last.dropFirst(8))) }
        // No verdict: the probe died inside the plugin's code in a way that still let it exit
        // (a sanitizer or a signal handler of the plugin's turns a crash into an exit status).
        return .refused("it crashed while loading (the probe process exited with status \(process.terminationStatus) and no verdict); the runtime did not load it")
    }
}
