#if canImport(Glibc)
import Glibc
#endif

/// One HTTP exchange over a real TCP connection, for tests of the metrics listener: send
/// bytes (well-formed or not), read until the server closes, split the answer.
///
/// ```swift
/// let reply = try HTTPExchange.get("/metrics", from: host.metricsAddress!)
/// #expect(reply.status == 200)
/// let metrics = try PrometheusExposition(parsing: reply.text)
/// ```
public enum HTTPExchange {
    public struct Reply: Sendable {
        public var status: Int
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: [UInt8]
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `GET path HTTP/1.1` (or another method).
    public static func get(_ path: String, from address: String, method: String = "GET") throws -> Reply {
        try send(Array("\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nAccept: text/plain\r\n\r\n".utf8), to: address)
    }

    /// Sends `request` as it is and reads the whole answer (until the server closes), within
    /// `timeout`.
    public static func send(_ request: [UInt8], to address: String, timeout: Duration = .seconds(10)) throws -> Reply {
        let fd = try connect(to: address, timeout: timeout)
        defer { close(fd) }
        var sent = 0
        while sent < request.count {
            let count = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw Failure(description: "send to \(address): \(String(cString: strerror(errno)))") }
            sent += count
        }
        let answer = try readUntilClosed(fd, from: address)
        return try parse(answer)
    }

    /// A connected socket with `timeout` for every send and receive on it (and a receive
    /// buffer of `receiveBuffer` bytes, when given: a client that reads slowly).
    public static func connect(to address: String, timeout: Duration = .seconds(10), receiveBuffer: Int32? = nil) throws -> Int32 {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw Failure(description: "not HOST:PORT: \(address)")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let info = list else {
            throw Failure(description: "cannot resolve \(address)")
        }
        defer { freeaddrinfo(list) }
        let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var limit = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        guard Glibc.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "connect to \(address): \(reason)")
        }
        return fd
    }

    /// Everything the server sends until it closes (or resets) the connection.
    public static func readUntilClosed(_ fd: Int32, from address: String) throws -> [UInt8] {
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 || (count < 0 && errno == ECONNRESET && !answer.isEmpty) { return answer }
            guard count > 0 else {
                throw Failure(description: "receive from \(address): \(String(cString: strerror(errno))) after \(answer.count) bytes")
            }
            answer += chunk[..<count]
        }
    }

    /// Status line, headers, and a body of exactly `Content-Length` bytes.
    static func parse(_ answer: [UInt8]) throws -> Reply {
        let separator = Array("\r\n\r\n".utf8)
        guard let end = (0...max(0, answer.count - 4)).first(where: { answer[$0..<min($0 + 4, answer.count)].elementsEqual(separator) }) else {
            throw Failure(description: "no end of head in \(answer.count) bytes: \(String(decoding: answer.prefix(200), as: UTF8.self))")
        }
        // "\r\n" is one Character.
        let lines = String(decoding: answer[..<end], as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let statusParts = lines[0].split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0] == "HTTP/1.1", let status = Int(statusParts[1]) else {
            throw Failure(description: "bad status line: \(lines[0])")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { throw Failure(description: "bad header line: \(line)") }
            headers[line[..<colon].lowercased()] = String(line[line.index(after: colon)...].drop { $0 == " " || $0 == "\t" })
        }
        let body = Array(answer[(end + 4)...])
        guard let length = headers["content-length"].flatMap(Int.init), length == body.count else {
            throw Failure(description: "Content-Length \(headers["content-length"] ?? "missing") but \(body.count) bytes of body")
        }
        return Reply(status: status, headers: headers, body: body)
    }
}
