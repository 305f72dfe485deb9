import AgentCore
import AgentWire
import FuzzSupport

extension EnvelopeFuzz {
    /// The most top-level fields decoded as subscriptions per input (keeps each run short).
    static let maximumSubscriptionFields = 64

    /// `Subscription(wire:range:)` on the whole input (an `agents.Subscription`) and on each
    /// length-delimited top-level field (the host's `AddSubscriptionRequest{subscription = 1}`,
    /// the runtime's `GetSubscriptionsResponse{repeated subscriptions = 1}`).
    static func checkSubscriptions(_ bytes: UnsafeRawBufferPointer) {
        checkSubscription(bytes, range: nil)
        var reader = ProtoReader(bytes)
        var count = 0
        while count < maximumSubscriptionFields, let field = try? reader.next() {
            if case .bytes(let range) = field.value { checkSubscription(bytes, range: range) }
            count += 1
        }
    }

    /// A decoded subscription can be described, validated, and encoded back to itself.
    static func checkSubscription(_ bytes: UnsafeRawBufferPointer, range: Range<Int>?) {
        let subscription: Subscription
        do {
            subscription = try Subscription(wire: bytes, range: range)
        } catch {
            Sink.keep(String(describing: error))
            return
        }
        Sink.keep(subscription.description)
        do {
            try subscription.validate()
        } catch {
            Sink.keep(String(describing: error))
        }
        var writer = ProtoWriter()
        subscription.encode(into: &writer)
        let decoded: Subscription
        do {
            decoded = try writer.bytes.withUnsafeBytes { bytes throws(SubscriptionError) in
                try Subscription(wire: bytes)
            }
        } catch {
            preconditionFailure("an encoded subscription does not decode: \(error)")
        }
        precondition(decoded == subscription, "subscription \(subscription) came back as \(decoded)")
    }
}
