/// A subscription: which topics an agent type receives, and with which key.
///
/// A matching topic `(type, source)` is delivered to agent `(agentType, key: source)`.
public struct Subscription: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Hashable, Sendable {
        /// Topics whose type equals the string.
        case topicType(String)
        /// Topics whose type starts with the string.
        case topicTypePrefix(String)
    }

    public var id: String
    public var agentType: String
    public var kind: Kind

    public init(id: String, agentType: String, kind: Kind) {
        self.id = id
        self.agentType = agentType
        self.kind = kind
    }

    /// Whether a topic of `topicType` matches.
    public func matches(topicType: String) -> Bool {
        switch kind {
        case .topicType(let type): return topicType == type
        case .topicTypePrefix(let prefix): return topicType.utf8.starts(with: prefix.utf8)
        }
    }

    public var description: String {
        switch kind {
        case .topicType(let type): return "\(id): topic type '\(type)' -> agent type '\(agentType)'"
        case .topicTypePrefix(let prefix): return "\(id): topic type prefix '\(prefix)' -> agent type '\(agentType)'"
        }
    }

    /// Checks the subscription against AutoGen's rules.
    /// - Throws: ``SubscriptionError`` naming the bad part.
    public func validate() throws(SubscriptionError) {
        guard !id.isEmpty else { throw SubscriptionError(.invalid, "the subscription has no id") }
        guard AgentID.isValidType(agentType) else {
            throw SubscriptionError(.invalid, "subscription \(id): invalid agent type '\(agentType)' (allowed: letters, digits, '_', '-', '.')")
        }
        switch kind {
        case .topicType(let type):
            guard TopicID.isValidType(type) else {
                throw SubscriptionError(.invalid, "subscription \(id): invalid topic type '\(type)' (allowed: letters, digits, '_', '-', '.', ':', '=')")
            }
        case .topicTypePrefix(let prefix):
            guard prefix.isEmpty || TopicID.isValidType(prefix) else {
                throw SubscriptionError(.invalid, "subscription \(id): invalid topic type prefix '\(prefix)' (allowed: letters, digits, '_', '-', '.', ':', '=')")
            }
        }
    }
}

/// Why a subscription was refused.
public struct SubscriptionError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// Malformed or empty.
        case invalid
        /// The id, or the same (agent type, topic) pair, is already subscribed.
        case duplicate
        /// No subscription has that id.
        case unknownID
        /// The subscription belongs to another connection.
        case notOwner
        /// The client holds as many subscriptions as the host allows one client.
        case limit
    }
    public var code: Code
    public var message: String
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}
