import ProtoWire

/// The longest value, in UTF-8 bytes, the host accepts for each name and id a peer sends it.
///
/// AutoGen sets no limits; these are far above what real agents use (a UUID is 36 bytes, an
/// agent type or topic type a few dozen) and low enough that what a peer can make the host
/// keep — its agent types, subscriptions, cached routes and pending requests — stays small
/// per entry. A value over its limit is refused with `INVALID_ARGUMENT` naming the field
/// (registration calls, `client-id` metadata, a request on the data channel) or, for an event,
/// dropped, counted and logged.
public enum FieldLimits {
    /// `client-id` metadata.
    public static let clientID = 256
    /// An agent type (`RegisterAgent`, a subscription's agent type, an RPC's target type).
    public static let agentType = 256
    /// An agent key (an RPC's target key; an event's topic source becomes one).
    public static let agentKey = 1024
    /// A topic type (an event's `type`, a subscription's topic type or topic type prefix).
    public static let topicType = 1024
    /// A topic source (an event's `source`: the key of the agents it reaches).
    public static let topicSource = 1024
    /// A subscription's id.
    public static let subscriptionID = 256
    /// An RPC's request id, and a CloudEvent's id.
    public static let requestID = 256

    /// A field over its limit: which one, how long it was, and the limit.
    public struct Violation: Error, Sendable, Hashable, CustomStringConvertible {
        /// The field as the protocol names it (`agent_type`, `topic_type`, `client-id`, …).
        public var field: String
        public var bytes: Int
        public var limit: Int

        public init(field: String, bytes: Int, limit: Int) {
            self.field = field
            self.bytes = bytes
            self.limit = limit
        }

        public var description: String {
            "\(field) is \(bytes) bytes long, over the host's limit of \(limit) bytes"
        }
    }

    /// Throws if `value` is longer than `limit` bytes.
    @inline(__always)
    public static func check(_ value: String, _ field: String, limit: Int) throws(Violation) {
        let bytes = value.utf8.count
        if bytes > limit { throw Violation(field: field, bytes: bytes, limit: limit) }
    }

    /// The first routing field of a data-channel message over its limit, if any.
    public static func violation(in envelope: Envelope) -> Violation? {
        do throws(Violation) {
            switch envelope {
            case .event(let event):
                try check(event.id, "CloudEvent.id", limit: requestID)
                try check(event.topicType, "CloudEvent.type (topic type)", limit: topicType)
                try check(event.topicSource, "CloudEvent.source (topic source)", limit: topicSource)
            case .request(let request):
                try check(request.requestID, "RpcRequest.request_id", limit: requestID)
                try check(request.targetType, "RpcRequest.target.type", limit: agentType)
                try check(request.targetKey, "RpcRequest.target.key", limit: agentKey)
            case .response(let response):
                try check(response.requestID, "RpcResponse.request_id", limit: requestID)
            }
            return nil
        } catch {
            return error
        }
    }

    /// The first field of `subscription` over its limit, if any.
    public static func violation(in subscription: Subscription) -> Violation? {
        do throws(Violation) {
            try check(subscription.id, "subscription.id", limit: subscriptionID)
            try check(subscription.agentType, "subscription.agent_type", limit: agentType)
            switch subscription.kind {
            case .topicType(let type): try check(type, "subscription.topic_type", limit: topicType)
            case .topicTypePrefix(let prefix): try check(prefix, "subscription.topic_type_prefix", limit: topicType)
            }
            return nil
        } catch {
            return error
        }
    }
}
