import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A real `nats-server` (Debian package `nats-server`, which scripts/bootstrap installs) for
/// tests: JetStream on, listening on 127.0.0.1 on a port the server picks (or one given), its
/// store in a fresh temporary folder. Stopped, and its folder removed, when the value goes.
///
/// ```swift
/// let server = try await NATSServer.start()
/// let connection = try await NATSConnection.connect(.init(servers: [server.url]), logger: logger)
/// try await server.kill()          // SIGKILL
/// try await server.restart()       // same port, same store
/// ```
public final class NATSServer: Sendable {
    /// Why the server could not be started.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The folder holding the store (`store/`), the server's log (`server.log`), and the file it
    /// writes its port to.
    public let directory: String
    /// The arguments `nats-server` was started with (before the port).
    public let arguments: [String]
    private let executable: String
    private let state: Mutex<(pid: pid_t, port: Int)>

    /// The port it listens on (the same across restarts).
    public var port: Int { state.withLock { $0.port } }
    /// `nats://127.0.0.1:PORT`.
    public var url: String { "nats://127.0.0.1:\(port)" }
    /// The process id of the server now running (0 when stopped).
    public var pid: pid_t { state.withLock { $0.pid } }
    public var storeDirectory: String { "\(directory)/store" }
    public var logPath: String { "\(directory)/server.log" }

    /// Where Debian's package puts the server (not on a non-root user's PATH), then the PATH.
    public static func executablePath() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let candidates = ["/usr/sbin/nats-server", "/usr/bin/nats-server", "/usr/local/bin/nats-server"]
            + path.split(separator: ":").map { "\($0)/nats-server" }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts a server and waits until it listens.
    /// - Parameters:
    ///   - jetStream: run JetStream (`-js`) with its store in the server's folder.
    ///   - port: nil to let the server pick a free one.
    ///   - extraArguments: more `nats-server` options (`--auth TOKEN`, `--tls …`).
    /// - Throws: ``Failure`` saying that nats-server is not installed, or what it logged when it
    ///   did not come up within `timeout`.
    public static func start(
        jetStream: Bool = true, port: Int? = nil, extraArguments: [String] = [], timeout: Duration = .seconds(20)
    ) async throws -> NATSServer {
        guard let executable = executablePath() else {
            throw Failure(description: "nats-server is not installed (Debian package nats-server; run scripts/bootstrap)")
        }
        let directory = NSTemporaryDirectory() + "agentd-nats-\(UUID().uuidString)"
        do {
            try FileManager.default.createDirectory(atPath: "\(directory)/store", withIntermediateDirectories: true)
        } catch {
            throw Failure(description: "cannot make \(directory): \(error)")
        }
        var arguments = ["-a", "127.0.0.1", "--ports_file_dir", directory]
        if jetStream { arguments += ["-js", "-sd", "\(directory)/store"] }
        arguments += extraArguments
        let server = NATSServer(executable: executable, directory: directory, arguments: arguments)
        try await server.launch(port: port ?? -1, timeout: timeout)
        return server
    }

    private init(executable: String, directory: String, arguments: [String]) {
        self.executable = executable
        self.directory = directory
        self.arguments = arguments
        state = Mutex((0, 0))
    }

    deinit {
        let pid = state.withLock { $0.pid }
        if pid > 0 { Self.signalAndReap(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Stops the server gracefully (SIGTERM) and waits for it to exit.
    public func stop() {
        let pid = state.withLock { state in
            defer { state.pid = 0 }
            return state.pid
        }
        if pid > 0 { Self.signalAndReap(pid, SIGTERM) }
    }

    /// Kills the server (SIGKILL), as a crash would, and waits for it to be gone.
    public func kill() {
        let pid = state.withLock { state in
            defer { state.pid = 0 }
            return state.pid
        }
        if pid > 0 { Self.signalAndReap(pid, SIGKILL) }
    }

    /// Starts the server again with the same store (stopping it first if it runs), and waits
    /// until it listens.
    /// - Parameter port: where: nil for the same port as before, -1 for a new one the server
    ///   picks (where the clients of the old one do not look), or a port.
    public func restart(port: Int? = nil, timeout: Duration = .seconds(20)) async throws {
        stop()
        try await launch(port: port ?? self.port, timeout: timeout)
    }

    /// The server's log so far.
    public func log() -> String {
        Self.read(logPath) ?? ""
    }

    private func launch(port: Int, timeout: Duration) async throws {
        // posix_spawn rather than Foundation's Process, whose run() leaks a weak reference that
        // LeakSanitizer reports in the AddressSanitizer runs.
        let argv: [UnsafeMutablePointer<CChar>?] =
            ([executable] + arguments + ["-p", "\(port)", "-l", logPath]).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "\(directory)/server.out", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, "\(directory)/server.out", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard spawned == 0 else {
            throw Failure(description: "cannot run \(executable): \(String(cString: strerror(spawned)))")
        }
        state.withLock { $0.pid = pid }
        Self.running.withLock { _ = $0.insert(pid) }
        // The server writes nats-server_<pid>.ports once it listens: {"nats":["nats://127.0.0.1:PORT"]}.
        let portsFile = "\(directory)/nats-server_\(pid).ports"
        var listening: Int?
        var exited = false
        _ = await poll(timeout: timeout, every: .milliseconds(5)) {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                exited = true
                return true
            }
            guard let text = Self.read(portsFile),
                  let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression)
            else { return false }
            listening = Int(text[range].split(separator: ":").last ?? "")
            return listening != nil
        }
        guard let listening, !exited else {
            if exited {
                state.withLock { $0.pid = 0 }
                Self.running.withLock { _ = $0.remove(pid) }
            } else {
                kill()
            }
            let output = Self.read("\(directory)/server.out") ?? ""
            throw Failure(description: "nats-server \(exited ? "exited" : "did not listen within \(timeout)") "
                + "(arguments \((arguments + ["-p", "\(port)"]).joined(separator: " "))): \(log())\(output)")
        }
        state.withLock { $0.port = listening }
    }

    /// The text of a file, read with POSIX calls: Foundation's `String(contentsOfFile:)` leaks its
    /// buffer (LeakSanitizer says) when it races the server writing the file.
    private static func read(_ path: String) -> String? {
        let descriptor = open(path, O_RDONLY)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count <= 0 { break }
            bytes += chunk[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Every server process started and not yet reaped, killed at exit if a value was never
    /// released (a test process that ends with a server value still held somewhere must not leave
    /// a nats-server behind).
    private static let running: Mutex<Set<pid_t>> = {
        atexit {
            for pid in NATSServer.running.withLock({ $0 }) { _ = Glibc.kill(pid, SIGKILL) }
        }
        return Mutex([])
    }()

    private static func signalAndReap(_ pid: pid_t, _ signal: Int32) {
        running.withLock { _ = $0.remove(pid) }
        _ = Glibc.kill(pid, signal)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }
}
