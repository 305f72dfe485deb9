#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import AgentCore
import Logging

/// A swift-log handler that writes one JSON object per line (`[log] format = json`), for log
/// shippers that read JSON lines:
///
/// ```
/// {"timestamp":"2025-06-01T12:00:00.123Z","level":"info","label":"agentd.host","message":"worker connected","source":"AgentHost","client.id":"runtime-1","peer":"ipv4:127.0.0.1:40312"}
/// ```
///
/// - `timestamp`: UTC, ISO 8601 with milliseconds; `level`: swift-log's level name; `label`:
///   the logger's label; `source`: the module that logged.
/// - then every metadata field — the handler's own, its metadata provider's, the call's (the
///   later wins for a key), sorted by key — under its own key (`client.id`, `agent.type`):
///   a string or a value's description as a JSON string, a list as an array, a dictionary as an
///   object, nested as deep as it goes. A metadata key that is one of the five above is written
///   as `metadata.<key>`, so that no key appears twice.
///
/// Every string is escaped as JSON requires (quotes, backslashes, control characters, newlines
/// included): a line is always one line. Foundation-free, like everything `agentd-host` links.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    /// The keys every line starts with.
    public static let fixedKeys: Set<String> = ["timestamp", "level", "label", "message", "source"]

    /// - Parameters:
    ///   - label: the logger's label.
    ///   - write: receives each line, without its newline.
    public init(label: String, metadataProvider: Logger.MetadataProvider? = nil,
                write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.write = write
    }

    /// Lines to standard error, each with one `write(2)` call.
    public static func standardError(label: String, metadataProvider: Logger.MetadataProvider? = nil) -> JSONLogHandler {
        JSONLogHandler(label: label, metadataProvider: metadataProvider) { HostLauncher.printError($0) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        if let error = event.error, merged["error"] == nil { merged["error"] = "\(error)" }
        write(Self.line(
            timestamp: Self.timestamp(), level: event.level, label: label, message: event.message.description,
            source: event.source, metadata: merged))
    }

    /// One line's JSON object (without the newline).
    public static func line(
        timestamp: String, level: Logger.Level, label: String, message: String, source: String,
        metadata: Logger.Metadata
    ) -> String {
        var members: [(key: String, value: JSONValue)] = [
            ("timestamp", .string(timestamp)), ("level", .string(level.rawValue)), ("label", .string(label)),
            ("message", .string(message)), ("source", .string(source)),
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            members.append((fixedKeys.contains(key) ? "metadata.\(key)" : key, json(value)))
        }
        return JSONValue.object(members).text
    }

    /// A metadata value as JSON: nested lists and dictionaries as arrays and objects (a
    /// dictionary's keys sorted).
    static func json(_ value: Logger.MetadataValue) -> JSONValue {
        switch value {
        case .string(let string): .string(string)
        case .stringConvertible(let convertible): .string(convertible.description)
        case .array(let elements): .array(elements.map(json))
        case .dictionary(let members): .object(members.sorted { $0.key < $1.key }.map { ($0.key, json($0.value)) })
        }
    }

    /// Now, as `2025-06-01T12:00:00.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return timestamp(seconds: Int(now.tv_sec), milliseconds: Int(now.tv_nsec) / 1_000_000)
    }

    /// `seconds` since the epoch (UTC) and `milliseconds` past them, as
    /// `2025-06-01T12:00:00.123Z`.
    static func timestamp(seconds: Int, milliseconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func digits(_ value: Int32, _ count: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, count - text.count)) + text
        }
        return "\(digits(parts.tm_year + 1900, 4))-\(digits(parts.tm_mon + 1, 2))-\(digits(parts.tm_mday, 2))"
            + "T\(digits(parts.tm_hour, 2)):\(digits(parts.tm_min, 2)):\(digits(parts.tm_sec, 2))"
            + ".\(digits(Int32(milliseconds), 3))Z"
    }
}
