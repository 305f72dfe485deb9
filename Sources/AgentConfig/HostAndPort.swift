/// A `HOST:PORT` address as the configuration accepts it: a host name or IPv4 address
/// (`localhost:50051`, `127.0.0.1:0`) or an IPv6 address in brackets (`[::1]:50051`), and a
/// port from 0 to 65535.
///
/// Use it to check a `--listen` or `--host` option the same way as the file's values:
///
/// ```swift
/// let address = try HostAndPort(parsing: "[::1]:50051")   // host "::1", port 50051
/// print(address)                                          // [::1]:50051
/// ```
public struct HostAndPort: Sendable, Hashable, CustomStringConvertible {
    /// The host name or address, without brackets.
    public var host: String
    /// The port, 0...65535.
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`.
    /// - Parameters:
    ///   - text: The address.
    ///   - allowsPortZero: Whether port 0 ("pick a free port") makes sense, as it does for an
    ///     address to listen on but not for one to connect to.
    /// - Throws: ``ConfigurationError`` (``ConfigurationError/Code/invalidValue``) saying what
    ///   is wrong, without a file or line.
    public init(parsing text: String, allowsPortZero: Bool = true) throws(ConfigurationError) {
        do throws(SettingValueError) {
            self = try SettingValue.hostAndPort(text, allowsPortZero: allowsPortZero)
        } catch {
            throw ConfigurationError(.invalidValue, error.message)
        }
    }

    /// `host:port`, or `[host]:port` when the host is an IPv6 address.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
