import AgentHost
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// An ``AgentHost`` on 127.0.0.1 (port 0) and the connections a test opens to it, all torn
/// down by ``withHost(maxMessageBytes:rpcTimeout:_:)``.
final class HostHarness: Sendable {
    let host: AgentHost
    private let channels = Mutex<[Channel]>([])

    init(host: AgentHost) { self.host = host }

    var target: String { "127.0.0.1:\(host.port)" }

    /// A connected worker with an open data channel.
    func worker(_ name: String, clientID: String? = nil) async throws -> RawWorker {
        let worker = try await RawWorker.connect(to: target, name: name, clientID: clientID)
        channels.withLock { $0.append(worker.channel) }
        return worker
    }

    /// A bare connection, for calls the test makes by hand.
    func channel() -> Channel {
        let channel = Channel(configuration: .init(target: target))
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
func withHost(
    maxMessageBytes: Int = 4 * 1024 * 1024, rpcTimeout: Duration = .seconds(60),
    _ body: (HostHarness) async throws -> Void
) async throws {
    let host = try AgentHost(
        configuration: .init(listen: "127.0.0.1:0", maxMessageBytes: maxMessageBytes, rpcTimeout: rpcTimeout),
        logger: testLogger())
    let harness = HostHarness(host: host)
    do {
        try await body(harness)
    } catch {
        await harness.tearDown()
        throw error
    }
    await harness.tearDown()
}
