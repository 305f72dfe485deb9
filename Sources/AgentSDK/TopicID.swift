/// A topic events are published to: a topic type and a source (AutoGen's `TopicId`).
///
/// Subscriptions match the type; the source becomes the key of the agent that receives the
/// event, so one topic type fans out to one agent per source.
public struct TopicID: Hashable, Sendable, CustomStringConvertible {
    /// The topic type, such as `"greetings"`. AutoGen allows letters, digits, `_ - . : =`.
    public var type: String
    /// The topic source, such as `"default"` or a conversation id.
    public var source: String

    public init(type: String, source: String) {
        self.type = type
        self.source = source
    }

    /// The text form `type/source`.
    public var description: String { "\(type)/\(source)" }
}
