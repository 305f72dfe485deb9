import AgentTestSupport
import Logging

/// The host's log lines, for tests that assert what it logged (and what it did not).
final class LogRecorder: Sendable {
    struct Record: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]

        /// The message and every metadata key and value, for checking what a line reveals.
        var fullText: String {
            ([message] + metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }).joined(separator: " ")
        }
    }

    let records = AsyncCondition<[Record]>([])

    var logger: Logger {
        var logger = Logger(label: "AgentHostTests") { [records] _ in RecordingHandler(records: records) }
        logger.logLevel = .trace
        return logger
    }

    /// Waits for the first line matching `predicate`.
    func first(timeout: Duration = .seconds(10), where predicate: @escaping @Sendable (Record) -> Bool) async -> Record? {
        await records.wait(timeout: timeout) { $0.contains(where: predicate) }?.first(where: predicate)
    }
}

private struct RecordingHandler: LogHandler {
    let records: AsyncCondition<[LogRecorder.Record]>
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
        let record = LogRecorder.Record(level: event.level, message: "\(event.message)", metadata: merged)
        records.mutate { $0.append(record) }
    }
}
