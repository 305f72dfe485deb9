/// `[log] format`: how log lines are written to standard error.
public enum LogFormat: String, Sendable, Hashable, CaseIterable {
    /// swift-log's text lines: `2025-06-01T12:00:00+0000 info agentd.host : host.address=... host listening`.
    case text
    /// One JSON object per line: `timestamp`, `level`, `label`, `message`, `source` and every
    /// metadata field, for log shippers.
    case json
}
