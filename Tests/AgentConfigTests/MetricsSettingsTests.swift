import AgentConfig
import Testing

@Suite("[runtime] and [host] metrics_listen")
struct MetricsSettingsTests {
    @Test("off unless set")
    func offByDefault() throws {
        let configuration = try RuntimeConfiguration.parse(text: "[runtime]\n[host]\n", path: "agentd.ini")
        #expect(configuration.metricsListen == nil)
        #expect(configuration.host.metricsListen == nil)
    }

    @Test("HOST:PORT in either section, port 0 and bracketed IPv6 included")
    func addresses() throws {
        let configuration = try RuntimeConfiguration.parse(
            text: "[runtime]\nmetrics_listen = 127.0.0.1:9464\n[host]\nmetrics_listen = [::1]:0\n", path: "agentd.ini")
        #expect(configuration.metricsListen == "127.0.0.1:9464")
        #expect(configuration.host.metricsListen == "[::1]:0")
        let named = try RuntimeConfiguration.parse(text: "[host]\nmetrics_listen = localhost:09465\n", path: "a.ini")
        #expect(named.host.metricsListen == "localhost:9465")
    }

    struct Bad: Sendable, CustomTestStringConvertible {
        var text: String
        var line: Int
        var section: String
        var key: String
        var description: String
        var testDescription: String { text }
    }

    static let bad: [Bad] = [
        Bad(text: "[runtime]\nmetrics_listen = 9464", line: 2, section: "runtime", key: "metrics_listen",
            description: "agentd.ini:2: [runtime] metrics_listen: \"9464\" has no port; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        Bad(text: "[host]\n\nmetrics_listen = 127.0.0.1:70000", line: 3, section: "host", key: "metrics_listen",
            description: "agentd.ini:3: [host] metrics_listen: \"127.0.0.1:70000\" has no valid port: the port is a number from 0 to 65535"),
        Bad(text: "[host]\nmetrics_listen =", line: 2, section: "host", key: "metrics_listen",
            description: "agentd.ini:2: [host] metrics_listen: \"\" has no port; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        Bad(text: "[runtime]\nmetric_listen = 127.0.0.1:1", line: 2, section: "runtime", key: "metric_listen",
            description: "agentd.ini:2: [runtime] metric_listen: unknown key (did you mean metrics_listen?); the keys of [runtime] are host, rpc_timeout, workers, client_id, tls_ca, tls_certificate, tls_key, auth_token, auth_token_file, publish_buffer, mailbox_limit, handler_timeout, metrics_listen, acknowledged_delivery"),
    ]

    @Test("a bad address is refused naming the file, line and key", arguments: bad)
    func refused(_ bad: Bad) throws {
        let error = try #require(throws: ConfigurationError.self) {
            try RuntimeConfiguration.parse(text: bad.text, path: "agentd.ini")
        }
        #expect(error.code == (bad.key == "metrics_listen" ? .invalidValue : .unknownKey))
        #expect(error.line == bad.line)
        #expect(error.section == bad.section)
        #expect(error.key == bad.key)
        #expect(error.description == bad.description)
    }
}
