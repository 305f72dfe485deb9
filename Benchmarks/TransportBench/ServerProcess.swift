// A server in a child process, for the cross-process and relay ping-pongs: `transport-bench
// --serve`, `transport-bench --relay-to HOST:PORT` or `core-pingpong --serve`, started with its
// stdin and stdout on pipes. It prints
// `listening on 127.0.0.1:PORT` and serves until its stdin reaches EOF, so closing our end of
// that pipe (or our exiting) stops it.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct ServerProcess {
    let pid: pid_t
    let port: Int
    private let stdinWrite: Int32
    private let stdoutRead: Int32

    private init(pid: pid_t, port: Int, stdinWrite: Int32, stdoutRead: Int32) {
        self.pid = pid
        self.port = port
        self.stdinWrite = stdinWrite
        self.stdoutRead = stdoutRead
    }

    /// Starts `arguments` (the first is looked up in PATH when it has no slash) and waits up
    /// to 10 s for its `listening on 127.0.0.1:PORT` line. Nil, with the reason on stderr,
    /// when it cannot be started or prints something else.
    static func start(_ arguments: [String]) -> ServerProcess? {
        var toChild: [Int32] = [-1, -1]
        var fromChild: [Int32] = [-1, -1]
        // Close-on-exec, so that no other child started meanwhile inherits them (Glibc's
        // module does not export pipe2).
        guard pipe(&toChild) == 0, pipe(&fromChild) == 0 else {
            report("pipe failed: errno \(errno)")
            return nil
        }
        for fd in toChild + fromChild { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the copies: the child gets exactly these two ends.
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, currentEnvironment())
        close(toChild[0])
        close(fromChild[1])
        guard spawned == 0 else {
            report("cannot start \(arguments[0]): \(String(cString: strerror(spawned)))")
            close(toChild[1])
            close(fromChild[0])
            return nil
        }
        let line = readLine(fromChild[0], timeoutMilliseconds: 10_000)
        let prefix = "listening on 127.0.0.1:"
        guard let line, line.hasPrefix(prefix), let port = Int(line.dropFirst(prefix.count)), port > 0 else {
            report("\(arguments.joined(separator: " ")) did not print its port (got \(line.map { "'\($0)'" } ?? "nothing"))")
            let process = ServerProcess(pid: pid, port: 0, stdinWrite: toChild[1], stdoutRead: fromChild[0])
            _ = process.stop()
            return nil
        }
        return ServerProcess(pid: pid, port: port, stdinWrite: toChild[1], stdoutRead: fromChild[0])
    }

    /// Closes the server's stdin and waits up to 10 s for it to exit (then kills it). Returns
    /// its wait status.
    @discardableResult
    func stop() -> Int32 {
        close(stdinWrite)
        var status: Int32 = 0
        for _ in 0..<1000 {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid || (result < 0 && errno != EINTR) {
                close(stdoutRead)
                return status
            }
            usleep(10_000)
        }
        ServerProcess.report("the server process \(pid) did not exit after its stdin closed; killing it")
        kill(pid, SIGKILL)
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(stdoutRead)
        return status
    }

    /// One line from `fd` (without its newline), or nil at EOF, error or timeout.
    private static func readLine(_ fd: Int32, timeoutMilliseconds: Int32) -> String? {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 256)
        var deadline = timeoutMilliseconds
        while deadline > 0 {
            var pollFD = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let start = monotonicMilliseconds()
            let ready = poll(&pollFD, 1, deadline)
            deadline -= Int32(clamping: monotonicMilliseconds() - start)
            if ready < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if ready == 0 { return nil }
            let count = read(fd, &chunk, chunk.count)
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return nil }
            bytes.append(contentsOf: chunk[0..<count])
            if let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
                return String(decoding: bytes[..<newline], as: UTF8.self)
            }
        }
        return nil
    }

    private static func monotonicMilliseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }

    private static func report(_ message: String) {
        let text = "transport-bench: \(message)\n"
        _ = text.utf8CString.withUnsafeBufferPointer { write(2, $0.baseAddress, $0.count - 1) }
    }
}

/// The process's environment, for the child.
private func currentEnvironment() -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
    environ
}
