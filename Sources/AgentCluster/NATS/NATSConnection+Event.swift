extension NATSConnection {
    /// What happens to a connection after it is up, as ``NATSConnection/events()`` tells it.
    public enum Event: Sendable {
        /// The connection to the server was lost; nats.c is reconnecting (publishes are buffered,
        /// up to ``Options/Reconnect/bufferSize``). Subscriptions resume by themselves once
        /// reconnected; key-value watches are resynchronised by this module.
        case disconnected
        /// Connected again, to `url`.
        case reconnected(url: String)
        /// Closed for good: by ``NATSConnection/close()`` or a drain, or because the reconnect
        /// attempts ran out. Comes once, last; the stream ends after it.
        case closed
        /// An asynchronous error: a slow consumer (messages dropped on a subscription whose
        /// handler did not keep up), a permissions violation, a server error.
        case error(NATSError)
    }
}
