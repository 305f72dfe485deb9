#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import GRPCTransport
import Synchronization

/// A minimal HTTP/1.1 server for Prometheus scrapes: `GET /metrics` (or `HEAD`) answers with
/// the exposition in the text format, version 0.0.4; any other path is 404, another method on
/// `/metrics` 405, a request that is not HTTP 400, one whose head exceeds
/// ``Limits/maxRequestBytes`` 431. One request per connection (`Connection: close`).
///
/// One thread of its own, POSIX sockets and `poll`: it never runs on, or waits for, the
/// threads that carry messages, and it costs a thread's stack and two descriptors (measured
/// in README's Metrics section). Bad clients are bounded: at most ``Limits/maxConnections`` at
/// once (a new one evicts the oldest still sending its request), each with at most
/// ``Limits/maxRequestBytes`` of request and ``Limits/timeout`` from accept to the last byte
/// of the answer — a client that never sends, sends one byte a second, or never reads is
/// closed when its time is up.
///
/// ```swift
/// let listener = try MetricsListener(listen: "127.0.0.1:0") { registry.exposition() }
/// print("metrics on http://\(listener.address)/metrics")
/// listener.stop()
/// ```
public final class MetricsListener: Sendable {
    public struct Limits: Sendable, Hashable {
        /// Connections served at once.
        public var maxConnections: Int
        /// The largest request head (request line and headers) read.
        public var maxRequestBytes: Int
        /// From accept to the end of the answer.
        public var timeout: Duration

        public init(maxConnections: Int = 16, maxRequestBytes: Int = 8192, timeout: Duration = .seconds(5)) {
            self.maxConnections = maxConnections
            self.maxRequestBytes = maxRequestBytes
            self.timeout = timeout
        }
    }

    /// The bound `HOST:PORT` (with the port the kernel picked when asked for 0).
    public let address: String
    /// The bound port.
    public let port: Int

    private let loop: ListenerLoop
    private let thread: NativeThread
    private let stopped = Atomic<Bool>(false)

    /// Listens on `listen` (`HOST:PORT`, IPv6 in brackets; port 0 picks a free one) and serves
    /// scrapes on a thread of its own until ``stop()``.
    /// - Parameter exposition: renders the answer to `GET /metrics`, on the listener's thread.
    /// - Throws: ``MetricsListenerError`` naming the address when it cannot listen there.
    public init(
        listen: String, limits: Limits = Limits(), exposition: @escaping @Sendable () -> [UInt8]
    ) throws(MetricsListenerError) {
        let socket = try ListeningSocket(listen: listen)
        address = socket.address
        port = socket.port
        guard let loop = ListenerLoop(socket: socket.descriptor, limits: limits, exposition: exposition) else {
            let reason = String(cString: strerror(errno))
            close(socket.descriptor)
            throw MetricsListenerError(.cannotListen, address: listen, reason)
        }
        self.loop = loop
        thread = NativeThread.start(name: "agentd-metrics", stackSize: 256 << 10) { loop.run() }
    }

    /// Stops serving: closes the connections in progress and the listening socket, and waits
    /// for the thread to end (a few milliseconds). Later calls do nothing.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        loop.wake()
        thread.join()
        loop.closeDescriptors()
    }

    deinit { stop() }
}

/// Why a metrics listener could not start.
public struct MetricsListenerError: Error, Sendable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private let name: String
        /// Not `HOST:PORT`, or a host that does not resolve.
        public static let invalidAddress = Code(name: "invalid address")
        /// The address is taken, or not one of this machine's.
        public static let cannotListen = Code(name: "cannot listen")
        public var description: String { name }
    }

    public var code: Code
    /// The address as it was given.
    public var address: String
    public var message: String

    init(_ code: Code, address: String, _ message: String) {
        self.code = code
        self.address = address
        self.message = message
    }

    public var description: String { "cannot serve metrics on \(address): \(message)" }
}

/// The listening socket, bound.
private struct ListeningSocket {
    let descriptor: Int32
    let address: String
    let port: Int

    init(listen: String) throws(MetricsListenerError) {
        guard let colon = listen.lastIndex(of: ":"), let port = UInt16(listen[listen.index(after: colon)...]) else {
            throw MetricsListenerError(.invalidAddress, address: listen, "give HOST:PORT, such as 127.0.0.1:9464 or [::1]:9464")
        }
        var host = String(listen[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host.isEmpty ? nil : host, String(port), &hints, &list)
        guard resolved == 0, let first = list else {
            throw MetricsListenerError(.invalidAddress, address: listen, String(cString: gai_strerror(resolved)))
        }
        defer { freeaddrinfo(list) }
        var failure = "no address to listen on"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else {
                failure = Self.errorText()
                continue
            }
            var on: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            guard bind(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0, Glibc.listen(fd, 64) == 0,
                  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0,
                  let bound = Self.boundAddress(fd) else {
                failure = Self.errorText()
                close(fd)
                continue
            }
            descriptor = fd
            address = bound.address
            self.port = bound.port
            return
        }
        throw MetricsListenerError(.cannotListen, address: listen, failure)
    }

    private static func errorText() -> String { String(cString: strerror(errno)) }

    /// A NUL-terminated C string in an array.
    private static func string(_ text: [CChar]) -> String {
        String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `HOST:PORT` of the socket's local address (IPv6 in brackets).
    private static func boundAddress(_ fd: Int32) -> (address: String, port: Int)? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let named = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                getsockname(fd, address, &length) == 0
                    && getnameinfo(address, length, &host, socklen_t(host.count), &service, socklen_t(service.count),
                                   NI_NUMERICHOST | NI_NUMERICSERV) == 0
            }
        }
        guard named, let port = Int(string(service)) else { return nil }
        let text = string(host)
        return (text.contains(":") ? "[\(text)]:\(port)" : "\(text):\(port)", port)
    }
}
