import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A loopback TCP proxy whose connections a test can cut at once, the way a killed process's
/// or a dead network's connections end: no HTTP/2 goodbye, the sockets just close.
final class TCPProxy: @unchecked Sendable {
    // @unchecked Sendable: `sockets` and `stopped` are guarded by `lock`; the listening socket
    // is immutable after init.
    let port: Int
    private let listener: Int32
    private let upstreamPort: Int
    private let lock = NSLock()
    private var sockets: [Int32] = []
    private var stopped = false

    init(upstreamPort: Int) throws {
        self.upstreamPort = upstreamPort
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.listener = listener
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, listen(listener, 16) == 0 else { throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return address
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            guard client >= 0 else {
                close(listener)
                return
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = Self.loopback(port: UInt16(upstreamPort))
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            let keep: Bool = lock.withLock {
                guard !stopped, connected == 0 else { return false }
                sockets += [client, upstream]
                return true
            }
            guard keep else {
                close(client)
                close(upstream)
                continue
            }
            Thread { Self.pump(client, upstream) }.start()
        }
    }

    private static func pump(_ a: Int32, _ b: Int32) {
        defer {
            close(a)
            close(b)
        }
        var fds = [pollfd(fd: a, events: Int16(POLLIN), revents: 0), pollfd(fd: b, events: Int16(POLLIN), revents: 0)]
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while poll(&fds, 2, -1) > 0 {
            for (index, fd) in fds.enumerated() where fd.revents != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd.fd, $0.baseAddress, $0.count) }
                guard n > 0 else { return }
                let other = index == 0 ? b : a
                var written = 0
                while written < n {
                    let w = buffer.withUnsafeBytes { write(other, $0.baseAddress! + written, n - written) }
                    guard w > 0 else { return }
                    written += w
                }
            }
        }
    }

    /// Drops every connection abruptly (RST) and refuses new ones.
    func cut() {
        let all: [Int32] = lock.withLock {
            stopped = true
            defer { sockets = [] }
            return sockets
        }
        for fd in all {
            var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
            // Wakes the pump thread, which closes both sockets (with RST, as lingering is off).
            Glibc.shutdown(fd, Int32(SHUT_RDWR))
        }
        Glibc.shutdown(listener, Int32(SHUT_RDWR))
    }
}
