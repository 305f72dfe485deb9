import AgentConfig
import Testing

@Suite("HostAndPort")
struct HostAndPortTests {
    @Test("parses host names, IPv4 and bracketed IPv6, and prints them back")
    func parsing() throws {
        let v6 = try HostAndPort(parsing: "[::1]:50051")
        #expect(v6 == HostAndPort(host: "::1", port: 50051))
        #expect(v6.description == "[::1]:50051")
        #expect(try HostAndPort(parsing: "localhost:0") == HostAndPort(host: "localhost", port: 0))
        #expect(try HostAndPort(parsing: "10.0.0.7:65535").description == "10.0.0.7:65535")
    }

    @Test("refuses what is not HOST:PORT, without a file or line", arguments: [
        "", ":", "host", "host:", "host:port", "host:-1", "host:+1", "host:123456", "[::1", "[::1]",
        "[::1]:", "[zz]:1", "[]:1", "a b:1", "::1:80", "host:80 ", "héllo:80",
    ])
    func refusals(text: String) throws {
        let error = try #require(throws: ConfigurationError.self) { try HostAndPort(parsing: text) }
        #expect(error.code == .invalidValue)
        #expect(error.path == nil && error.line == nil)
        #expect(error.description.hasPrefix("\"\(text)\""))
    }

    @Test("port 0 is refused where the address is to be connected to")
    func portZero() throws {
        #expect(throws: ConfigurationError.self) { try HostAndPort(parsing: "127.0.0.1:0", allowsPortZero: false) }
        #expect(try HostAndPort(parsing: "127.0.0.1:1", allowsPortZero: false).port == 1)
    }
}
