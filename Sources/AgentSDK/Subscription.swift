/// Which published topics an agent type receives.
///
/// A matching topic `(type, source)` is delivered to the agent `(agent type, key = source)`.
///
/// ```swift
/// static let subscriptions: [Subscription] = [
///     .topicType("greetings"),       // topics whose type is exactly "greetings"
///     .topicPrefix("greeter:"),      // "greeter:…" — AutoGen's direct-message style
/// ]
/// ```
public enum Subscription: Hashable, Sendable {
    /// Topics whose type equals the string (AutoGen's `TypeSubscription`).
    case topicType(String)
    /// Topics whose type starts with the string (AutoGen's `TypePrefixSubscription`).
    case topicPrefix(String)

    /// The matched string: the topic type or the prefix.
    public var topic: String {
        switch self {
        case .topicType(let type): type
        case .topicPrefix(let prefix): prefix
        }
    }
}
