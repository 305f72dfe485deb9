#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One connection to the metrics listener: read the request head, write the answer, then
/// read (and discard) whatever the client still sends until it closes, so that closing does
/// not reset the connection under the answer. Only the listener's thread touches it; every
/// step is non-blocking and the loop closes it at its deadline whatever its state.
final class ScrapeConnection {
    let fd: Int32
    let deadline: ContinuousClock.Instant

    private enum Phase {
        case reading([UInt8])
        case writing([UInt8], sent: Int)
        case draining
        case done
    }

    private var phase: Phase = .reading([])

    init(fd: Int32, deadline: ContinuousClock.Instant) {
        self.fd = fd
        self.deadline = deadline
    }

    var wantsToWrite: Bool {
        if case .writing = phase { return true }
        return false
    }

    var isDone: Bool {
        if case .done = phase { return true }
        return false
    }

    func close() { _ = Glibc.close(fd) }

    /// Moves on as far as the socket lets it without blocking.
    func serve(limits: MetricsListener.Limits, exposition: () -> [UInt8]) {
        while true {
            switch phase {
            case .reading(var head):
                phase = .done  // while `head` is being appended to (no copy)
                guard let answer = read(into: &head, limit: limits.maxRequestBytes, exposition: exposition) else {
                    phase = .reading(head)
                    return
                }
                phase = answer.isEmpty ? .done : .writing(answer, sent: 0)
            case .writing(let answer, let sent):
                let count = answer.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                if count < 0 {
                    if errno == EINTR { continue }
                    if errno != EAGAIN && errno != EWOULDBLOCK { phase = .done }
                    return
                }
                if sent + count < answer.count {
                    phase = .writing(answer, sent: sent + count)
                    continue
                }
                shutdown(fd, Int32(SHUT_WR))
                phase = .draining
            case .draining:
                var scratch = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
                let count = withUnsafeMutableBytes(of: &scratch) { recv(fd, $0.baseAddress, $0.count, 0) }
                if count > 0 { continue }
                if count < 0 && (errno == EINTR) { continue }
                if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
                phase = .done
            case .done:
                return
            }
        }
    }

    /// Reads what the socket has into `head`; returns the answer once the request is complete
    /// (or refused), an empty answer if the client left first, nil while more is needed.
    private func read(into head: inout [UInt8], limit: Int, exposition: () -> [UInt8]) -> [UInt8]? {
        var chunk = [UInt8](repeating: 0, count: 2048)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if errno == EINTR { continue }
                return errno == EAGAIN || errno == EWOULDBLOCK ? nil : []
            }
            if count == 0 { return [] }
            let scanFrom = max(0, head.count - 3)
            head.append(contentsOf: chunk[..<count])
            switch ScrapeRequest.parse(head, scanningFrom: scanFrom) {
            case .incomplete:
                guard head.count < limit else { return ScrapeRequest.answer(.headTooLarge(limit)) }
            case .complete(let request):
                return ScrapeRequest.answer(.request(request), exposition: exposition)
            case .malformed(let reason):
                return ScrapeRequest.answer(.malformed(reason))
            }
        }
    }
}
