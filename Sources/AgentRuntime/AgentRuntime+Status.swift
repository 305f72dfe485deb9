import AgentCore

extension AgentRuntime {
    /// At most this many keys of one shared agent type are listed in ``status()``: the rest are
    /// counted (`resident`) and `keys_truncated` is true.
    public static let statusKeysPerType = 1_000

    /// What the runtime serves now, as one JSON object whose keys stay stable for scripts (the
    /// answer to agentd's `StatusRequest`, which `agentd status` shows):
    ///
    /// ```
    /// {"client_id": "...", "host": "127.0.0.1:50051",
    ///  "plugins": [{"name", "version", "content_hash", "path",
    ///               "agent_types": [{"name": "echo", "shared": false}, ...]}, ...],
    ///  "agents": [{"agent_type": "tally", "shared": true, "resident": 3,
    ///              "keys": ["a", "b", "c"], "keys_truncated": false, "workers": ["rt-1", "rt-2"]},
    ///             {"agent_type": "echo", "shared": false, "resident": 2}, ...],
    ///  "resident": 5,
    ///  "statistics": {"activations", "deactivations", "commits", "checkpoints", "checkpoint_failures"}}
    /// ```
    ///
    /// `plugins` in file name order; `agents` has one entry per agent type served or resident,
    /// by name; a shared type's entry lists its resident keys (sorted, at most
    /// ``statusKeysPerType``) and the workers serving it as the host last said.
    public func status() -> JSONValue {
        let plugins = self.plugins
        var shared: [String: Bool] = [:]
        for plugin in plugins {
            for type in plugin.agentTypes { shared[type.name] = type.isShared }
        }
        var resident: [String: [String]] = [:]
        let agents = residentAgents
        for agent in agents { resident[agent.type, default: []].append(agent.key) }
        let members = sharedTypeMembers
        let types = Set(shared.keys).union(resident.keys).sorted()
        let byType = types.map { type -> JSONValue in
            let keys = resident[type] ?? []
            var entry: [(key: String, value: JSONValue)] = [
                ("agent_type", .string(type)), ("shared", .bool(shared[type] ?? false)), ("resident", .int(keys.count)),
            ]
            if shared[type] == true {
                let listed = keys.sorted().prefix(Self.statusKeysPerType)
                entry.append(("keys", .array(listed.map(JSONValue.string))))
                entry.append(("keys_truncated", .bool(listed.count < keys.count)))
                entry.append(("workers", .array((members[type] ?? []).map(JSONValue.string))))
            }
            return .object(entry)
        }
        let statistics = agentStatistics
        return .object([
            ("client_id", .string(configuration.clientID)),
            ("host", hostAddress.map(JSONValue.string) ?? .null),
            ("plugins", .array(plugins.map { plugin in
                .object([
                    ("name", .string(plugin.name)), ("version", .string(plugin.version)),
                    ("content_hash", .string(plugin.contentHash)), ("path", .string(plugin.path)),
                    ("agent_types", .array(plugin.agentTypes.map { type in
                        .object([("name", .string(type.name)), ("shared", .bool(type.isShared))])
                    })),
                ])
            })),
            ("agents", .array(byType)),
            ("resident", .int(agents.count)),
            ("statistics", .object([
                ("activations", .int(statistics.activations)), ("deactivations", .int(statistics.deactivations)),
                ("commits", .int(statistics.commits)), ("checkpoints", .int(statistics.checkpoints)),
                ("checkpoint_failures", .int(statistics.checkpointFailures)),
            ])),
        ])
    }
}
