import AgentCore
import GRPCTransport

extension AgentHost {
    /// The host's status call (agentd's own, beside `agents.AgentRpc`): an empty request, and a
    /// response whose bytes are ``status()``'s JSON text (UTF-8). It needs no `client-id`; on
    /// a host that requires tokens it needs one like any other call. `agentd status` makes it.
    public static let statusMethod = "/agentd.Status/Get"

    /// What the host is doing now, as one JSON object whose keys stay stable for scripts:
    ///
    /// ```
    /// {"host": {"address": "127.0.0.1:50051", "uptime_seconds": 12.5, "serving": true,
    ///           "cluster": null | {"name", "nats", "connected", "peers": [...], "remote_agent_types"}},
    ///  "workers": [{"client_id", "peer", "agent_types": [...], "shared_agent_types": [...],
    ///               "subscriptions", "queued_messages", "dropped_events", "control_channel"}, ...]}
    /// ```
    ///
    /// `workers` are the clients with an open data channel, by client id; `control_channel`
    /// says whether one also has a control channel open (every agentd runtime does, AutoGen's
    /// Python workers do not), and so whether a runtime status request can reach it.
    /// `queued_messages` are those waiting to be sent to it; `dropped_events` those dropped
    /// because it read too slowly. `serving` turns false when shutdown starts.
    public func status() -> JSONValue {
        let uptime = ContinuousClock.now - startedAt
        let milliseconds = uptime.components.seconds * 1000 + uptime.components.attoseconds / 1_000_000_000_000_000
        let cluster: JSONValue = clusterStatus.map { cluster in
            .object([
                ("name", .string(cluster.name)), ("nats", .string(cluster.nats)), ("connected", .bool(cluster.connected)),
                ("peers", .array(cluster.peers.sorted().map(JSONValue.string))),
                ("remote_agent_types", .int(cluster.remoteAgentTypes)),
            ])
        } ?? .null
        let workers = table.workerSummaries().map { worker -> JSONValue in
            .object([
                ("client_id", .string(worker.connection.clientID)), ("peer", .string(worker.connection.peer)),
                ("agent_types", .array(worker.agentTypes.map(JSONValue.string))),
                ("shared_agent_types", .array(worker.sharedAgentTypes.map(JSONValue.string))),
                ("subscriptions", .int(worker.subscriptionCount)),
                ("queued_messages", .int(worker.connection.queuedMessages)),
                ("dropped_events", .int(worker.connection.droppedEvents)),
                ("control_channel", .bool(worker.hasControlChannel)),
            ])
        }
        return .object([
            ("host", .object([
                ("address", .string(address)), ("uptime_seconds", .double(Double(milliseconds) / 1000)),
                ("serving", .bool(health.status(of: "") == .serving)), ("cluster", cluster),
            ])),
            ("workers", .array(workers)),
        ])
    }
}

/// One `/agentd.Status/Get` call: answers its request with the host's status.
final class StatusCall: ServerCallHandler {
    let host: AgentHost

    init(host: AgentHost) { self.host = host }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        call.respond(MessageBuffer(Array(host.status().text.utf8)))
    }
}
