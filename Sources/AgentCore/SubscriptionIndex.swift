/// The set of subscriptions, indexed so that finding the agent types a topic type reaches
/// costs one hash lookup (exact topic types) plus a walk along the topic type's bytes
/// (prefixes) — never a scan of unrelated subscriptions.
public struct SubscriptionIndex: Sendable {
    /// Every subscription by id.
    public private(set) var byID: [String: Subscription] = [:]
    /// Exact topic type → agent type → how many subscriptions say so.
    private var exact: [String: [String: Int]] = [:]
    /// A byte trie of prefixes; node 0 is the empty prefix.
    private var nodes: [PrefixNode] = [PrefixNode()]
    /// (agent type, kind) pairs already subscribed, to refuse duplicates.
    private var pairs: Set<Pair> = []

    private struct Pair: Hashable, Sendable {
        var agentType: String
        var kind: Subscription.Kind
    }

    private struct PrefixNode: Sendable {
        var children: [UInt8: Int] = [:]
        var agentTypes: [String: Int] = [:]
    }

    public init() {}

    public var count: Int { byID.count }

    /// Adds a subscription.
    /// - Throws: ``SubscriptionError`` if it is invalid, its id is taken, or the same agent
    ///   type is already subscribed to the same topic type or prefix.
    public mutating func insert(_ subscription: Subscription) throws(SubscriptionError) {
        try subscription.validate()
        if let existing = byID[subscription.id] {
            throw SubscriptionError(.duplicate, "subscription id '\(subscription.id)' is already taken (\(existing))")
        }
        let pair = Pair(agentType: subscription.agentType, kind: subscription.kind)
        guard !pairs.contains(pair) else {
            throw SubscriptionError(.duplicate, "agent type '\(subscription.agentType)' is already subscribed to the same topic (\(subscription))")
        }
        pairs.insert(pair)
        byID[subscription.id] = subscription
        switch subscription.kind {
        case .topicType(let type):
            exact[type, default: [:]][subscription.agentType, default: 0] += 1
        case .topicTypePrefix(let prefix):
            var node = 0
            for byte in prefix.utf8 {
                if let child = nodes[node].children[byte] {
                    node = child
                } else {
                    nodes.append(PrefixNode())
                    nodes[node].children[byte] = nodes.count - 1
                    node = nodes.count - 1
                }
            }
            nodes[node].agentTypes[subscription.agentType, default: 0] += 1
        }
    }

    /// Removes the subscription with `id` and returns it (nil if there is none).
    @discardableResult
    public mutating func remove(id: String) -> Subscription? {
        guard let subscription = byID.removeValue(forKey: id) else { return nil }
        pairs.remove(Pair(agentType: subscription.agentType, kind: subscription.kind))
        switch subscription.kind {
        case .topicType(let type):
            exact[type]?[subscription.agentType, default: 1] -= 1
            if exact[type]?[subscription.agentType] == 0 { exact[type]?[subscription.agentType] = nil }
            if exact[type]?.isEmpty == true { exact[type] = nil }
        case .topicTypePrefix(let prefix):
            var node = 0
            for byte in prefix.utf8 {
                guard let child = nodes[node].children[byte] else { return subscription }
                node = child
            }
            nodes[node].agentTypes[subscription.agentType, default: 1] -= 1
            if nodes[node].agentTypes[subscription.agentType] == 0 { nodes[node].agentTypes[subscription.agentType] = nil }
            // Emptied trie nodes stay (they cost a few bytes and are reused by the next
            // subscription with that prefix).
        }
        return subscription
    }

    /// The agent types subscribed to topics of `topicType`, each once.
    public func agentTypes(matching topicType: String) -> Set<String> {
        var result = Set<String>()
        if let types = exact[topicType] { result.formUnion(types.keys) }
        var node = 0
        result.formUnion(nodes[0].agentTypes.keys)
        for byte in topicType.utf8 {
            guard let child = nodes[node].children[byte] else { break }
            node = child
            result.formUnion(nodes[node].agentTypes.keys)
        }
        return result
    }
}
