import Logging

/// Every line a ``Logger`` made by ``logger()`` logs, at every level, for tests that assert what
/// the code under test logged (and what it did not), or that wait for a line with a deadline.
///
/// ```swift
/// let log = LogCapture()
/// let runtime = try AgentRuntime(configuration: configuration, logger: log.logger())
/// let mark = log.count
/// // … drop a plugin into the folder …
/// let loaded = await log.wait(since: mark) { $0.message == "plugin loaded" }
/// ```
public final class LogCapture: Sendable {
    /// One log line: its level, message, and metadata (the logger's and the line's, merged)
    /// as text.
    public struct Record: Sendable {
        public var level: Logger.Level
        public var message: String
        public var metadata: [String: String]

        /// The message and every metadata key and value, for checking what a line reveals.
        public var fullText: String {
            ([message] + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
        }
    }

    private let records = AsyncCondition<[Record]>([])
    private let label: String

    /// - Parameter label: the label of the loggers ``logger()`` makes.
    public init(label: String = "test") {
        self.label = label
    }

    /// A logger at level `trace` whose every line this capture records.
    public func logger() -> Logger {
        var logger = Logger(label: label) { [records] _ in RecordingHandler(records: records) }
        logger.logLevel = .trace
        return logger
    }

    /// Every line so far, in order.
    public var all: [Record] { records.value }

    /// How many lines so far: a mark to pass as `since` to ``wait(since:timeout:where:)``.
    public var count: Int { records.value.count }

    /// The lines so far that match `predicate`.
    public func records(where predicate: (Record) -> Bool) -> [Record] { all.filter(predicate) }

    /// Waits for a line matching `predicate` among those logged after the first `since` lines
    /// (by default: those logged from now on).
    /// - Returns: the first such line, or nil if none came within `timeout`.
    public func wait(
        since: Int? = nil, timeout: Duration = .seconds(10), where predicate: @escaping @Sendable (Record) -> Bool
    ) async -> Record? {
        let start = since ?? count
        return await records.wait(timeout: timeout) { $0.dropFirst(start).contains(where: predicate) }?
            .dropFirst(start).first(where: predicate)
    }

    /// Waits for the first line ever logged that matches `predicate`.
    public func first(timeout: Duration = .seconds(10), where predicate: @escaping @Sendable (Record) -> Bool) async -> Record? {
        await wait(since: 0, timeout: timeout, where: predicate)
    }
}

private struct RecordingHandler: LogHandler {
    let records: AsyncCondition<[LogCapture.Record]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged: [String: String] = [:]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) {
            merged[key] = "\(value)"
        }
        let record = LogCapture.Record(level: event.level, message: "\(event.message)", metadata: merged)
        records.mutate { $0.append(record) }
    }
}
