/// The identity of an agent: its agent type and its key (AutoGen's `AgentId`, `type/key`).
///
/// Agents reached through a topic subscription get the topic's source as their key.
public struct AgentID: Hashable, Sendable, CustomStringConvertible {
    /// The agent type, such as `"greeter"`.
    public var type: String
    /// The instance key, such as `"default"` or a conversation id.
    public var key: String

    public init(type: String, key: String) {
        self.type = type
        self.key = key
    }

    /// The text form `type/key`.
    public var description: String { "\(type)/\(key)" }
}
