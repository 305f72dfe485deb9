import Synchronization

/// A live subscription: its handler runs for each message on the subject until
/// ``unsubscribe()`` or the connection's close.
///
/// Dropping this handle does not end the subscription (the connection keeps it); call
/// ``unsubscribe()``.
public final class NATSSubscription: Sendable {
    public let subject: String
    /// The queue group, if the subscription is one of a group that shares the messages.
    public let queueGroup: String?
    let id: UInt64
    let connection: NATSConnection
    let delivery: MessageDelivery

    init(subject: String, queueGroup: String?, id: UInt64, connection: NATSConnection, delivery: MessageDelivery) {
        self.subject = subject
        self.queueGroup = queueGroup
        self.id = id
        self.connection = connection
        self.delivery = delivery
    }

    /// Ends the subscription: the server stops sending its messages and those still queued in
    /// the client are dropped. Safe to call more than once, and from the handler itself.
    ///
    /// A handler call that is under way when this returns finishes; ``finished()`` waits for it.
    public func unsubscribe() {
        connection.unsubscribe(id)
    }

    /// Returns once the handler has run for the last time: after ``unsubscribe()``, a drain or
    /// the connection's close. Never call it from the handler (it would wait for itself).
    public func finished() async {
        await delivery.finished()
    }
}

/// What nats.c holds for an async subscription: the handler, and the signal that nats.c is done
/// with it.
///
/// nats.c gets a retained reference as the subscription's closure and gives it back in the
/// subscription's completion callback (`natsSubscription_SetOnCompleteCB`), which runs once,
/// after the subscription is closed and its handler has returned for the last time; only then is
/// the reference released. No lookup on the message path: the closure is this object.
final class MessageDelivery: Sendable {
    let handler: @Sendable (NATSMessage) -> Void
    private let completion = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    init(_ handler: @escaping @Sendable (NATSMessage) -> Void) {
        self.handler = handler
    }

    /// nats.c will not call the handler again.
    func complete() {
        let waiters: [CheckedContinuation<Void, Never>] = completion.withLock { state in
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = completion.withLock { state in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
    }
}
