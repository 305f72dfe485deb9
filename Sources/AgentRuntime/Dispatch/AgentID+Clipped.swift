import AgentCore

extension AgentID {
    /// `type/key` for messages and logs, with a long key cut to its first 200 characters (a
    /// key may be up to ``FieldLimits/agentKey`` bytes long).
    var clipped: String {
        guard key.count > 200 else { return description }
        return "\(type)/\(key.prefix(200))… (\(key.utf8.count) bytes)"
    }
}
