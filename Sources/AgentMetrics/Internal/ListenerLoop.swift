#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The metrics listener's thread: one `poll` over the listening socket, a wake-up pipe and
/// the connections in progress (kept in ``run()``'s locals, so that only this thread ever
/// touches them).
final class ListenerLoop: Sendable {
    private let listening: Int32
    /// `wake()` writes to `wakeWrite`; the loop ends when `wakeRead` is readable.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let limits: MetricsListener.Limits
    private let exposition: @Sendable () -> [UInt8]

    /// Nil (with `errno` set) if the wake-up pipe cannot be made.
    init?(socket: Int32, limits: MetricsListener.Limits, exposition: @escaping @Sendable () -> [UInt8]) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return nil }
        for fd in fds {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        }
        listening = socket
        wakeRead = fds[0]
        wakeWrite = fds[1]
        self.limits = limits
        self.exposition = exposition
    }

    /// Ends ``run()`` (any thread).
    func wake() {
        var byte: UInt8 = 1
        _ = write(wakeWrite, &byte, 1)
    }

    /// After ``run()`` has returned.
    func closeDescriptors() {
        close(listening)
        close(wakeRead)
        close(wakeWrite)
    }

    func run() {
        var connections: [ScrapeConnection] = []
        defer { for connection in connections { connection.close() } }
        var descriptors: [pollfd] = []
        /// Out of descriptors (EMFILE): accepting waits until then instead of spinning.
        var acceptPausedUntil: ContinuousClock.Instant?
        while true {
            if let until = acceptPausedUntil, until <= .now { acceptPausedUntil = nil }
            descriptors.removeAll(keepingCapacity: true)
            descriptors.append(pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0))
            descriptors.append(pollfd(fd: listening, events: acceptPausedUntil == nil ? Int16(POLLIN) : 0, revents: 0))
            for connection in connections {
                descriptors.append(pollfd(fd: connection.fd, events: connection.wantsToWrite ? Int16(POLLOUT) : Int16(POLLIN), revents: 0))
            }
            let now = ContinuousClock.now
            let deadlines = connections.map(\.deadline) + (acceptPausedUntil.map { [$0] } ?? [])
            let timeout = deadlines.map { Self.milliseconds(from: now, to: $0) }.min() ?? -1
            let ready = poll(&descriptors, nfds_t(descriptors.count), Int32(clamping: timeout))
            if ready < 0 && errno != EINTR { return }
            if descriptors[0].revents != 0 { return }
            // Connections first (their indices are those of `descriptors` from 2 on), then new ones.
            var index = 0
            for descriptor in descriptors.dropFirst(2) {
                let connection = connections[index]
                if descriptor.revents != 0 { connection.serve(limits: limits, exposition: exposition) }
                index += 1
            }
            let after = ContinuousClock.now
            connections.removeAll { connection in
                guard connection.isDone || connection.deadline <= after else { return false }
                connection.close()
                return true
            }
            if descriptors[1].revents != 0, !accept(into: &connections) { acceptPausedUntil = .now + .milliseconds(100) }
        }
    }

    /// Accepts what waits (without blocking), evicting the oldest connection still sending its
    /// request when all places are taken: connections that send nothing only churn, and a
    /// scraper, which sends its request at once, is served.
    /// - Returns: false when the process is out of descriptors (EMFILE, ENFILE, ENOMEM...).
    private func accept(into connections: inout [ScrapeConnection]) -> Bool {
        while true {
            let fd = Glibc.accept(listening, nil, nil)
            if fd < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK
            }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if connections.count >= limits.maxConnections {
                let oldest = connections.firstIndex { !$0.wantsToWrite } ?? 0
                connections.remove(at: oldest).close()
            }
            connections.append(ScrapeConnection(fd: fd, deadline: .now + limits.timeout))
        }
    }

    /// Milliseconds from `now` to `deadline`, rounded up, at least 0.
    private static func milliseconds(from now: ContinuousClock.Instant, to deadline: ContinuousClock.Instant) -> Int {
        let left = deadline - now
        guard left > .zero else { return 0 }
        let (seconds, attoseconds) = left.components
        return Int(seconds) * 1000 + Int((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
