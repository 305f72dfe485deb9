import AgentHost
import AgentTestSupport
import Foundation
import GRPCTransport
import Logging
import Synchronization
import Testing

/// An ``AgentHost`` on 127.0.0.1 (port 0) and the connections a test opens to it, all torn
/// down by ``withHost(maxMessageBytes:rpcTimeout:_:)``.
final class HostHarness: Sendable {
    let host: AgentHost
    /// How the harness's connections reach the host (plaintext unless the host uses TLS).
    let clientCredentials: ChannelCredentials
    private let channels = Mutex<[Channel]>([])

    init(host: AgentHost, clientCredentials: ChannelCredentials = .insecure) {
        self.host = host
        self.clientCredentials = clientCredentials
    }

    var target: String { "127.0.0.1:\(host.port)" }

    /// A connected worker with an open data channel.
    /// - Parameter authToken: sent as `authorization: Bearer <token>` on every call, when set.
    func worker(_ name: String, clientID: String? = nil, authToken: String? = nil, acknowledged: Bool = false) async throws -> RawWorker {
        let worker = try await RawWorker.connect(
            to: target, name: name, clientID: clientID, credentials: clientCredentials, authToken: authToken,
            acknowledged: acknowledged)
        channels.withLock { $0.append(worker.channel) }
        return worker
    }

    /// A bare connection, for calls the test makes by hand (with the harness's credentials
    /// unless `credentials` says otherwise).
    func channel(credentials: ChannelCredentials? = nil) -> Channel {
        let channel = Channel(configuration: .init(target: target, credentials: credentials ?? clientCredentials))
        channels.withLock { $0.append(channel) }
        return channel
    }

    func tearDown() async {
        for channel in channels.withLock({ $0 }) { await channel.shutdown() }
        await host.shutdown(gracePeriod: .seconds(1))
    }
}

/// The host's log lines go to standard error when `AGENT_HOST_TEST_LOG` names a level
/// (`debug`, `info`, …); otherwise nowhere.
private func testLogger() -> Logger {
    guard let name = ProcessInfo.processInfo.environment["AGENT_HOST_TEST_LOG"],
          let level = Logger.Level(rawValue: name) else {
        return Logger(label: "AgentHostTests", factory: { _ in SwiftLogNoOpLogHandler() })
    }
    var logger = Logger(label: "AgentHostTests", factory: { StreamLogHandler.standardError(label: $0) })
    logger.logLevel = level
    return logger
}

/// Runs `body` against a fresh host listening on 127.0.0.1 (port 0), then closes every
/// connection the harness opened and shuts the host down.
///
/// - Parameters:
///   - credentials, authTokens: the host's TLS and tokens (plaintext and none by default).
///   - clientCredentials: how the harness's connections reach it.
///   - logger: the host's logger (by default, see `AGENT_HOST_TEST_LOG`).
///   - queueLimits, outboundBudgetBytes, metricsListen: its outbound queue bound, its
///     outbound budget across connections and its metrics listener.
///   - registrationsWithoutChannelWindow: how long it keeps what a client registered without
///     opening its data channel.
func withHost(
    maxMessageBytes: Int = 4 * 1024 * 1024, rpcTimeout: Duration = .seconds(60),
    credentials: ServerCredentials = .insecure, authTokens: [String] = [],
    queueLimits: AgentHost.QueueLimits = .init(), outboundBudgetBytes: Int = 512 * 1024 * 1024, metricsListen: String? = nil,
    clientCredentials: ChannelCredentials = .insecure, logger: Logger? = nil,
    lateWindow: Duration = .zero, lateWindowBytes: Int = 64 * 1024 * 1024,
    registrationsWithoutChannelWindow: Duration = .seconds(30),
    _ body: (HostHarness) async throws -> Void
) async throws {
    var configuration = AgentHost.Configuration(
        listen: "127.0.0.1:0", maxMessageBytes: maxMessageBytes, rpcTimeout: rpcTimeout,
        queueLimits: queueLimits, outboundBudgetBytes: outboundBudgetBytes, credentials: credentials, authTokens: authTokens,
        metricsListen: metricsListen, lateWindow: lateWindow, lateWindowBytes: lateWindowBytes)
    configuration.registrationsWithoutChannelWindow = registrationsWithoutChannelWindow
    let host = try AgentHost(configuration: configuration, logger: logger ?? testLogger())
    let harness = HostHarness(host: host, clientCredentials: clientCredentials)
    do {
        try await body(harness)
    } catch {
        await harness.tearDown()
        throw error
    }
    await harness.tearDown()
}

/// A real HTTP scrape of the host's /metrics, parsed strictly.
func scrape(_ host: AgentHost) throws -> PrometheusExposition {
    let address = try #require(host.metricsAddress)
    let reply = try HTTPExchange.get("/metrics", from: address)
    #expect(reply.status == 200)
    #expect(reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
    return try PrometheusExposition(parsing: reply.text)
}
