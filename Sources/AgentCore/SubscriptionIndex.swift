/// The set of subscriptions, indexed so that finding the agent types a topic type reaches
/// costs one hash lookup (exact topic types) plus one per distinct prefix length (prefixes) —
/// never a scan of unrelated subscriptions. It holds memory in proportion to the
/// subscriptions it holds, and gives it back as they go.
public struct SubscriptionIndex: Sendable {
    /// Every subscription by id.
    public private(set) var byID: [String: Subscription] = [:]
    /// Exact topic type → agent type → how many subscriptions say so.
    private var exact: [String: [String: Int]] = [:]
    /// Topic type prefix (its UTF-8 bytes: matching compares bytes, as
    /// ``Subscription/matches(topicType:)`` does) → agent type → how many subscriptions say so.
    private var prefixes: [[UInt8]: [String: Int]] = [:]
    /// Prefix length in UTF-8 bytes → how many distinct prefixes of that length are indexed:
    /// a topic type is matched by looking up its own prefixes of these lengths only.
    private var prefixLengths: [Int: Int] = [:]
    /// (agent type, kind) pairs already subscribed, to refuse duplicates.
    private var pairs: Set<Pair> = []

    private struct Pair: Hashable, Sendable {
        var agentType: String
        var kind: Subscription.Kind
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
            let key = Array(prefix.utf8)
            if prefixes[key] == nil { prefixLengths[key.count, default: 0] += 1 }
            prefixes[key, default: [:]][subscription.agentType, default: 0] += 1
        }
    }

    /// Removes the subscription with `id` and returns it (nil if there is none).
    @discardableResult
    ///
    /// Everything the subscription took is given back: its entries go, and a table left mostly
    /// empty is reallocated at its new size (a Swift dictionary keeps its capacity otherwise).
    public mutating func remove(id: String) -> Subscription? {
        guard let subscription = byID.removeValue(forKey: id) else { return nil }
        pairs.remove(Pair(agentType: subscription.agentType, kind: subscription.kind))
        switch subscription.kind {
        case .topicType(let type):
            exact[type]?[subscription.agentType, default: 1] -= 1
            if exact[type]?[subscription.agentType] == 0 { exact[type]?[subscription.agentType] = nil }
            if exact[type]?.isEmpty == true { exact[type] = nil }
            exact.shrinkIfSparse()
        case .topicTypePrefix(let prefix):
            let key = Array(prefix.utf8)
            prefixes[key]?[subscription.agentType, default: 1] -= 1
            if prefixes[key]?[subscription.agentType] == 0 { prefixes[key]?[subscription.agentType] = nil }
            if prefixes[key]?.isEmpty == true {
                prefixes[key] = nil
                prefixLengths[key.count, default: 1] -= 1
                if prefixLengths[key.count] == 0 { prefixLengths[key.count] = nil }
            }
            prefixes.shrinkIfSparse()
        }
        byID.shrinkIfSparse()
        pairs.shrinkIfSparse()
        return subscription
    }

    /// The agent types subscribed to topics of `topicType`, each once.
    public func agentTypes(matching topicType: String) -> Set<String> {
        var result = Set<String>()
        if let types = exact[topicType] { result.formUnion(types.keys) }
        guard !prefixLengths.isEmpty else { return result }
        let bytes = Array(topicType.utf8)
        for length in prefixLengths.keys where length <= bytes.count {
            if let types = prefixes[Array(bytes[..<length])] { result.formUnion(types.keys) }
        }
        return result
    }
}

extension Dictionary {
    /// Reallocates the table at its size when it holds under a quarter of its capacity:
    /// removing entries never shrinks a Swift dictionary, so a table a peer filled once would
    /// otherwise keep its peak size.
    package mutating func shrinkIfSparse() {
        guard capacity > 64, count < capacity / 4 else { return }
        var smaller = Self(minimumCapacity: count)
        for (key, value) in self { smaller[key] = value }
        self = smaller
    }
}

extension Set {
    /// ``Swift/Dictionary/shrinkIfSparse()`` for a set.
    package mutating func shrinkIfSparse() {
        guard capacity > 64, count < capacity / 4 else { return }
        var smaller = Self(minimumCapacity: count)
        for element in self { smaller.insert(element) }
        self = smaller
    }
}
