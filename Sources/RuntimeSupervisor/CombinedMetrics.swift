#if canImport(Glibc)
import Glibc
#endif
import AgentMetrics
import Synchronization

/// What `[runtime] metrics_listen` serves for a supervised `agentd run`: one scrape with the
/// embedded host's metrics (this process's ``hostRegistry``) and the runtime's (fetched at each
/// scrape from the runtime process's own listener on loopback), as when both ran in one process.
/// `agentd_process_resident_memory_bytes` is the sum of both processes'. While the runtime
/// restarts, a scrape shows the host's metrics alone.
///
/// The supervisor owns the listening port, so that it stays the same across restarts.
final class CombinedMetrics: Sendable {
    /// The embedded host's metrics (empty without one, or when the host serves its own).
    let hostRegistry = MetricsRegistry()
    /// The runtime process's listener (`HOST:PORT`), once it said where.
    private let runtimeAddress = Mutex<String?>(nil)
    /// How long a scrape waits for the runtime's part.
    static let timeout: Duration = .seconds(2)
    /// Both processes report it; a scrape shows their sum.
    static let residentMemory = "agentd_process_resident_memory_bytes"

    func runtimeListens(at address: String?) {
        runtimeAddress.withLock { $0 = address }
    }

    /// The scrape's text.
    func exposition() -> [UInt8] {
        let host = String(decoding: hostRegistry.exposition(), as: UTF8.self)
        let runtime = runtimeAddress.withLock { $0 }.flatMap { Self.fetch(from: $0) } ?? ""
        return Array(Self.merge(host, runtime).utf8)
    }

    /// The two expositions one after the other, ``residentMemory`` once with the sum.
    static func merge(_ host: String, _ runtime: String) -> String {
        var resident: Double?
        var lines: [Substring] = []
        for text in [host, runtime] {
            for line in text.split(separator: "\n") {
                if line == "# TYPE \(residentMemory) gauge" || line.hasPrefix("# HELP \(residentMemory) ") { continue }
                if line.hasPrefix(residentMemory + " ") {
                    if let value = Double(line.dropFirst(residentMemory.count + 1)) { resident = (resident ?? 0) + value }
                    continue
                }
                lines.append(line)
            }
        }
        var text = lines.joined(separator: "\n")
        if !text.isEmpty { text += "\n" }
        if let resident { text += "# TYPE \(residentMemory) gauge\n\(residentMemory) \(resident)\n" }
        return text
    }

    /// `GET /metrics` from the runtime's listener at `address` (`127.0.0.1:PORT`); nil when it
    /// does not answer with 200 within ``timeout``.
    static func fetch(from address: String) -> String? {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = port.bigEndian
        guard inet_pton(AF_INET, String(address[..<colon]), &target.sin_addr) == 1 else { return nil }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            answer += chunk[..<count]
            if answer.count > 64 << 20 { return nil }
        }
        let text = String(decoding: answer, as: UTF8.self)
        guard text.hasPrefix("HTTP/1.1 200"), let blank = text.range(of: "\r\n\r\n") else { return nil }
        return String(text[blank.upperBound...])
    }
}
