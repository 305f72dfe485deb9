import Foundation
import HostLauncher
import Logging
import Synchronization
import Testing

/// The lines a handler wrote.
final class LineSink: Sendable {
    private let lines = Mutex<[String]>([])
    var all: [String] { lines.withLock { $0 } }
    func append(_ line: String) { lines.withLock { $0.append(line) } }
}

@Suite("[log] format = json: one JSON object per line")
struct JSONLogHandlerTests {
    /// A logger writing JSON lines into a sink, at `trace`.
    static func logger(label: String = "agentd.test", metadata: Logger.Metadata = [:]) -> (Logger, LineSink) {
        let sink = LineSink()
        var logger = Logger(label: label) { label in
            JSONLogHandler(label: label) { sink.append($0) }
        }
        logger.logLevel = .trace
        for (key, value) in metadata { logger[metadataKey: key] = value }
        return (logger, sink)
    }

    /// The one line in `sink`, parsed as a JSON object.
    static func onlyObject(_ sink: LineSink) throws -> [String: Any] {
        let lines = sink.all
        try #require(lines.count == 1, "\(lines)")
        #expect(!lines[0].contains("\n"), "a log line holds a newline: \(lines[0])")
        let object = try JSONSerialization.jsonObject(with: Data(lines[0].utf8))
        return try #require(object as? [String: Any], "not a JSON object: \(lines[0])")
    }

    @Test("timestamp, level, label, message and source, then the metadata")
    func fixedFields() throws {
        let (logger, sink) = Self.logger(label: "agentd.host")
        logger.warning("slow subscriber", metadata: ["client.id": "runtime-1", "dropped": "1000"])
        let object = try Self.onlyObject(sink)
        #expect(object["level"] as? String == "warning")
        #expect(object["label"] as? String == "agentd.host")
        #expect(object["message"] as? String == "slow subscriber")
        #expect(object["source"] as? String == "HostLauncherTests")
        #expect(object["client.id"] as? String == "runtime-1")
        #expect(object["dropped"] as? String == "1000")
        let timestamp = try #require(object["timestamp"] as? String)
        #expect(timestamp.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/) != nil, "\(timestamp)")
        // The fixed keys come first, in this order.
        #expect(sink.all[0].hasPrefix(#"{"timestamp":""#))
        #expect(sink.all[0].contains(#","level":"warning","label":"agentd.host","message":"slow subscriber","source":"HostLauncherTests","#))
    }

    @Test("quotes, backslashes, newlines and control characters are escaped; the line stays one line")
    func escaping() throws {
        let (logger, sink) = Self.logger()
        let message = "a \"quoted\" path C:\\agents\nsecond line\ttab \u{01} bell\u{07} end"
        logger.info("\(message)", metadata: ["reason": "line one\r\nline two \"q\""])
        let object = try Self.onlyObject(sink)
        #expect(object["message"] as? String == message)
        #expect(object["reason"] as? String == "line one\r\nline two \"q\"")
        #expect(sink.all[0].contains(#"a \"quoted\" path C:\\agents\nsecond line\ttab \u0001 bell\u0007 end"#))
    }

    @Test("non-ASCII text travels as UTF-8, unchanged")
    func unicode() throws {
        let (logger, sink) = Self.logger()
        logger.info("héllo wörld ✓ 😀 日本", metadata: ["agent.key": "клиент-𝄞"])
        let object = try Self.onlyObject(sink)
        #expect(object["message"] as? String == "héllo wörld ✓ 😀 日本")
        #expect(object["agent.key"] as? String == "клиент-𝄞")
        #expect(sink.all[0].contains("😀"))
    }

    @Test("lists become arrays, dictionaries objects, at any depth; other values their description")
    func nesting() throws {
        let (logger, sink) = Self.logger()
        logger.info("nested", metadata: [
            "agent.types": ["echo", "tally"],
            "placement": ["tally": ["workers": ["rt-1", "rt-2"], "keys": "3"], "empty": [:]],
            "count": .stringConvertible(42),
        ])
        let object = try Self.onlyObject(sink)
        #expect(object["agent.types"] as? [String] == ["echo", "tally"])
        let placement = try #require(object["placement"] as? [String: Any])
        let tally = try #require(placement["tally"] as? [String: Any])
        #expect(tally["workers"] as? [String] == ["rt-1", "rt-2"])
        #expect(tally["keys"] as? String == "3")
        #expect((placement["empty"] as? [String: Any])?.isEmpty == true)
        #expect(object["count"] as? String == "42")
    }

    @Test("the logger's own metadata, and the call's winning over it")
    func metadataMerge() throws {
        let (logger, sink) = Self.logger(metadata: ["client.id": "from-logger", "host.address": "127.0.0.1:1"])
        logger.info("merged", metadata: ["client.id": "from-call"])
        let object = try Self.onlyObject(sink)
        #expect(object["client.id"] as? String == "from-call")
        #expect(object["host.address"] as? String == "127.0.0.1:1")
    }

    @Test("a metadata key that is one of the fixed keys is written as metadata.KEY")
    func reservedKeys() throws {
        let (logger, sink) = Self.logger()
        logger.info("the real message", metadata: ["message": "from metadata", "level": "x"])
        let object = try Self.onlyObject(sink)
        #expect(object["message"] as? String == "the real message")
        #expect(object["level"] as? String == "info")
        #expect(object["metadata.message"] as? String == "from metadata")
        #expect(object["metadata.level"] as? String == "x")
    }

    @Test("the log level filters as with any handler")
    func level() {
        var (logger, sink) = Self.logger()
        logger.logLevel = .warning
        logger.info("dropped")
        logger.error("kept")
        #expect(sink.all.count == 1)
    }
}
