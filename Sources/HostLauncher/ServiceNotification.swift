#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Readiness and shutdown notices to systemd (`Type=notify` units: `agentd-host.service`,
/// `agentd@.service`), written without libsystemd: the protocol is one datagram of
/// newline-separated `KEY=VALUE` lines to the unix socket named by `$NOTIFY_SOCKET` (an abstract
/// socket when the name starts with `@`), as `sd_notify(3)` and systemd's `NOTIFY_SOCKET`
/// documentation describe it. Linking libsystemd instead would map it and its own libraries
/// (liblzma, libzstd, liblz4, libgcrypt, libcap) into the lean `agentd-host`, whose resident
/// memory is mostly shared libraries' touched pages, for these few lines.
///
/// Without `$NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) nothing is sent. A
/// notice that cannot be sent is dropped, as `sd_notify` drops it: the process serves either way.
public enum ServiceNotification {
    /// `READY=1`: the process serves (the host listens; the runtime has loaded its plugins),
    /// with `status` as the unit's status line (`systemctl status`).
    public static func ready(status: String) {
        send("READY=1\nSTATUS=\(status)")
    }

    /// `STOPPING=1`: a graceful shutdown has begun.
    public static func stopping() {
        send("STOPPING=1\nSTATUS=shutting down")
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`.
    /// - Returns: whether the datagram was sent; `false` also when there is no `$NOTIFY_SOCKET`.
    @discardableResult
    public static func send(_ state: String) -> Bool {
        guard let raw = getenv("NOTIFY_SOCKET") else { return false }
        return send(state, toSocket: String(cString: raw))
    }

    /// Sends `state` to the unix datagram socket `path` (`@name`: the abstract socket `name`).
    /// - Returns: whether the datagram was sent.
    @discardableResult
    public static func send(_ state: String, toSocket path: String) -> Bool {
        var name = Array(path.utf8)
        guard name.count >= 2, name[0] == UInt8(ascii: "/") || name[0] == UInt8(ascii: "@") else { return false }
        if name[0] == UInt8(ascii: "@") { name[0] = 0 }  // abstract namespace: a leading NUL, no trailing one
        var address = sockaddr_un()
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard name.count < capacity else { return false }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { bytes in
            bytes.copyBytes(from: name)
        }
        let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + name.count)
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var message = state
        return message.withUTF8 { bytes in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    while true {
                        let sent = sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL), socketAddress, length)
                        if sent >= 0 { return sent == bytes.count }
                        if errno != EINTR { return false }
                    }
                }
            }
        }
    }
}
