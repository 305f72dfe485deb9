import Foundation

/// What `agentd status` shows: the host's status (`/agentd.Status/Get`) and, for each worker
/// that is an agentd runtime, that runtime's answer to a status request — as text for a person
/// (``text``) or as JSON for scripts (``json()``).
struct StatusReport {
    /// The host's JSON, decoded (keys in snake case, see `AgentHost.status()`).
    struct Host: Decodable {
        struct Facts: Decodable {
            var address: String
            var uptimeSeconds: Double
            var serving: Bool
            var cluster: Cluster?
        }

        struct Cluster: Decodable {
            var name: String
            var nats: String
            var connected: Bool
            var peers: [String]
            var remoteAgentTypes: Int
        }

        struct Worker: Decodable {
            var clientId: String
            var peer: String
            var agentTypes: [String]
            var sharedAgentTypes: [String]
            var subscriptions: Int
            var queuedMessages: Int
            var droppedEvents: Int
            var controlChannel: Bool
        }

        var host: Facts
        var workers: [Worker]
    }

    /// A runtime's JSON, decoded (see `AgentRuntime.status()`).
    struct Runtime: Decodable, Sendable {
        struct Plugin: Decodable, Sendable {
            struct AgentType: Decodable, Sendable {
                var name: String
                var shared: Bool
            }
            var name: String
            var version: String
            var contentHash: String
            var path: String
            var agentTypes: [AgentType]
        }

        struct Agents: Decodable, Sendable {
            var agentType: String
            var shared: Bool
            var resident: Int
            var keys: [String]?
            var keysTruncated: Bool?
            var workers: [String]?
        }

        var clientId: String
        var plugins: [Plugin]
        var agents: [Agents]
        var resident: Int
    }

    /// What became of the status request to one worker.
    enum RuntimeAnswer: Sendable {
        /// Not asked: the worker has no control channel, so it is no agentd runtime.
        case notARuntime
        /// The runtime's JSON text (for `--json`) and decoded.
        case answered(json: String, decoded: Runtime)
        /// Nothing came back in time.
        case noAnswer(timeout: String)
        /// The runtime or the host answered with an error, or the answer was unreadable.
        case failed(String)

        /// `runtime_status` in the JSON output.
        var summary: String {
            switch self {
            case .notARuntime: "not an agentd runtime"
            case .answered: "answered"
            case .noAnswer: "no answer"
            case .failed: "error"
            }
        }
    }

    /// The host's JSON as it came (for `--json`), and decoded.
    var hostRaw: [String: Any]
    var host: Host
    /// By client id.
    var runtimes: [String: RuntimeAnswer]

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return decoder
    }

    // MARK: JSON

    /// The host's JSON with, in each worker, `runtime_status` ("answered", "no answer", "not an
    /// agentd runtime" or "error"), `runtime` (the runtime's JSON when it answered, else null)
    /// and `runtime_error` (when it failed); keys sorted, indented.
    func json() throws -> Data {
        var document = hostRaw
        let workers = try (hostRaw["workers"] as? [[String: Any]] ?? []).map { worker -> [String: Any] in
            var worker = worker
            let answer = (worker["client_id"] as? String).flatMap { runtimes[$0] } ?? .notARuntime
            worker["runtime_status"] = answer.summary
            switch answer {
            case .answered(let json, _): worker["runtime"] = try JSONSerialization.jsonObject(with: Data(json.utf8))
            case .failed(let error):
                worker["runtime"] = NSNull()
                worker["runtime_error"] = error
            case .noAnswer, .notARuntime: worker["runtime"] = NSNull()
            }
            return worker
        }
        document["workers"] = workers
        return try JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    }

    // MARK: Text

    /// For a person: the host's facts, a table of its workers, then each runtime's plugins and
    /// resident agents.
    var text: String {
        var lines: [String] = []
        let facts = host.host
        lines.append("host \(facts.address), up \(Self.duration(facts.uptimeSeconds)), \(facts.serving ? "serving" : "shutting down")")
        if let cluster = facts.cluster {
            let peers = cluster.peers.isEmpty ? "no peers" : "peers \(cluster.peers.joined(separator: ", "))"
            lines.append("cluster \(cluster.name) (NATS \(cluster.nats)): \(cluster.connected ? "connected" : "NOT connected"); \(peers); \(cluster.remoteAgentTypes) agent types on other hosts")
        }
        lines.append("")
        guard !host.workers.isEmpty else {
            lines.append("no workers connected")
            return lines.joined(separator: "\n")
        }
        lines.append(host.workers.count == 1 ? "1 worker" : "\(host.workers.count) workers")
        lines += Self.table(
            ["CLIENT ID", "PEER", "SUBSCRIPTIONS", "QUEUED", "DROPPED", "KIND", "AGENT TYPES"],
            host.workers.map { worker in
                [worker.clientId, worker.peer, "\(worker.subscriptions)", "\(worker.queuedMessages)",
                 "\(worker.droppedEvents)", worker.controlChannel ? "agentd runtime" : "other worker",
                 Self.agentTypes(worker.agentTypes, shared: Set(worker.sharedAgentTypes))]
            })
        for worker in host.workers {
            lines.append("")
            switch runtimes[worker.clientId] ?? .notARuntime {
            case .notARuntime:
                lines.append("\(worker.clientId): not an agentd runtime (no control channel): host-side facts only")
            case .noAnswer(let timeout):
                lines.append("\(worker.clientId): no answer within \(timeout)")
            case .failed(let error):
                lines.append("\(worker.clientId): no status: \(error)")
            case .answered(_, let runtime):
                lines += Self.runtimeLines(runtime)
            }
        }
        return lines.joined(separator: "\n")
    }

    /// Keys of a shared type shown in the text, at most.
    static let keysShown = 20

    private static func runtimeLines(_ runtime: Runtime) -> [String] {
        var lines = ["\(runtime.clientId): agentd runtime"]
        if runtime.plugins.isEmpty {
            lines.append("  no plugins")
        } else {
            lines.append("  plugins")
            lines += table(
                ["NAME", "VERSION", "CONTENT HASH", "AGENT TYPES"],
                runtime.plugins.map { plugin in
                    [plugin.name, plugin.version, plugin.contentHash,
                     agentTypes(plugin.agentTypes.map(\.name), shared: Set(plugin.agentTypes.filter(\.shared).map(\.name)))]
                }, indent: "    ")
        }
        lines.append("  resident agents: \(runtime.resident)")
        if !runtime.agents.isEmpty {
            // The keys column only where a type is shared: the others' keys are not listed.
            let anyShared = runtime.agents.contains(where: \.shared)
            lines += table(
                ["AGENT TYPE", "RESIDENT"] + (anyShared ? ["KEYS"] : []),
                runtime.agents.map { agents in
                    [agents.agentType + (agents.shared ? " (shared)" : ""), "\(agents.resident)"]
                        + (anyShared ? [keys(agents)] : [])
                }, indent: "    ")
        }
        return lines
    }

    /// A shared type's keys (the first ``keysShown``, then how many more), and the workers it
    /// is placed over.
    private static func keys(_ agents: Runtime.Agents) -> String {
        guard agents.shared, let keys = agents.keys else { return "" }
        var text = keys.prefix(keysShown).joined(separator: ", ")
        let more = agents.resident - min(keys.count, keysShown)
        if more > 0 { text += (text.isEmpty ? "" : ", ") + "… \(more) more" }
        if let workers = agents.workers, !workers.isEmpty {
            text += (text.isEmpty ? "" : " ") + "[workers: \(workers.joined(separator: ", "))]"
        }
        return text
    }

    /// `echo, tally (shared)`.
    private static func agentTypes(_ types: [String], shared: Set<String>) -> String {
        types.isEmpty ? "-" : types.map { shared.contains($0) ? "\($0) (shared)" : $0 }.joined(separator: ", ")
    }

    /// Columns padded to their widest cell (the last one not padded), two spaces apart.
    static func table(_ header: [String], _ rows: [[String]], indent: String = "") -> [String] {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        return all.map { row in
            let cells = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[column] - cell.count)
            }
            let line = indent + cells.joined(separator: "  ")
            return String(line.reversed().drop(while: { $0 == " " }).reversed())
        }
    }

    /// `3d 04h 05m`, `2h 03m 12s`, `4m 07s`, `12.3 s`.
    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        let (days, hours, minutes, rest) = (whole / 86_400, whole / 3_600 % 24, whole / 60 % 60, whole % 60)
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        if days > 0 { return "\(days)d \(two(hours))h \(two(minutes))m" }
        if hours > 0 { return "\(hours)h \(two(minutes))m \(two(rest))s" }
        if minutes > 0 { return "\(minutes)m \(two(rest))s" }
        return String(format: "%.1f s", seconds)
    }
}
