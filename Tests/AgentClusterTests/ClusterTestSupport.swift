import AgentCluster
import AgentTestSupport
import Logging

/// Options for a test connection to `server`: quick reconnects, forever.
func testOptions(_ server: NATSServer, name: String = "test") -> NATSConnection.Options {
    var options = NATSConnection.Options(servers: [server.url])
    options.name = name
    options.reconnect.wait = .milliseconds(50)
    options.reconnect.jitter = .milliseconds(10)
    return options
}

/// A connection to `server`, its log captured.
func connect(
    _ server: NATSServer, log: LogCapture = LogCapture(), _ configure: (inout NATSConnection.Options) -> Void = { _ in }
) async throws -> NATSConnection {
    var options = testOptions(server)
    configure(&options)
    return try await NATSConnection.connect(options, logger: log.logger())
}

/// Everything a handler received, to wait on with a deadline.
final class Received<Element: Sendable>: Sendable {
    let items = AsyncCondition<[Element]>([])

    func append(_ item: Element) { items.mutate { $0.append(item) } }

    var all: [Element] { items.value }

    /// Waits until `count` items have arrived; returns them, or nil after `timeout`.
    func wait(count: Int, timeout: Duration = .seconds(10)) async -> [Element]? {
        await items.wait(timeout: timeout) { $0.count >= count }
    }

    /// Waits until an item matches `predicate`.
    func wait(timeout: Duration = .seconds(10), until predicate: @escaping @Sendable (Element) -> Bool) async -> Element? {
        await items.wait(timeout: timeout) { $0.contains(where: predicate) }?.first(where: predicate)
    }
}

extension Array where Element == UInt8 {
    init(text: String) { self = Array(text.utf8) }
    var text: String { String(decoding: self, as: UTF8.self) }
}

/// Collects a connection's events from now on.
func collectEvents(of connection: NATSConnection) -> Received<NATSConnection.Event> {
    let received = Received<NATSConnection.Event>()
    let stream = connection.events()
    Task {
        for await event in stream { received.append(event) }
    }
    return received
}

extension NATSConnection.Event {
    var isDisconnected: Bool { if case .disconnected = self { true } else { false } }
    var isReconnected: Bool { if case .reconnected = self { true } else { false } }
    var isClosed: Bool { if case .closed = self { true } else { false } }
}
