import CNATS
import Logging
import Synchronization

/// Where nats.c's connection callbacks (disconnected, reconnected, closed, asynchronous error)
/// land in Swift, and who hears of them: the ``NATSConnection/events()`` streams and the
/// connection's own observers (key-value watches, which must be resynchronised after every
/// reconnect).
///
/// nats.c calls the callbacks on its own thread and may keep calling them after the connection
/// is destroyed (nats.c#735), and may call the closed callback more than once (nats.c#331). So
/// nothing here blocks (a stream's `yield` and a log line), `.closed` goes out once, and the
/// callbacks find this object through ``ConnectionCallbacks``' token, not a pointer.
final class ConnectionEvents: Sendable {
    private struct State {
        var listeners: [Int: AsyncStream<NATSConnection.Event>.Continuation] = [:]
        var reconnectObservers: [Int: @Sendable () -> Void] = [:]
        var nextID = 0
        var closed = false
        /// ``NATSConnection/close()`` has begun: the connection's loss is its doing.
        var closing = false
        var closedWaiters: [CheckedContinuation<Void, Never>] = []
        /// The subjects of the connection's live subscriptions by their nats.c pointer, to name
        /// the subject in an asynchronous error without touching the subscription.
        var subjects: [LibraryHandle: String] = [:]
    }

    let address: String
    let logger: Logger
    private let state = Mutex(State())

    init(address: String, logger: Logger) {
        self.address = address
        self.logger = logger
    }

    /// A new stream of every event from now on; one that starts after the connection closed
    /// holds `.closed` alone.
    func stream() -> AsyncStream<NATSConnection.Event> {
        let (stream, continuation) = AsyncStream.makeStream(of: NATSConnection.Event.self)
        let id: Int? = state.withLock { state in
            guard !state.closed else { return nil }
            state.nextID += 1
            state.listeners[state.nextID] = continuation
            return state.nextID
        }
        guard let id else {
            continuation.yield(.closed)
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.listeners.removeValue(forKey: id) }
        }
        return stream
    }

    /// Calls `observer` (on nats.c's callback thread: it must not block) after every reconnect.
    /// - Returns: the id to remove it with.
    func addReconnectObserver(_ observer: @escaping @Sendable () -> Void) -> Int {
        state.withLock { state in
            state.nextID += 1
            state.reconnectObservers[state.nextID] = observer
            return state.nextID
        }
    }

    func removeReconnectObserver(_ id: Int) {
        _ = state.withLock { $0.reconnectObservers.removeValue(forKey: id) }
    }

    func subscribed(_ subscription: LibraryHandle, subject: String) {
        state.withLock { $0.subjects[subscription] = subject }
    }

    func unsubscribed(_ subscription: LibraryHandle) {
        _ = state.withLock { $0.subjects.removeValue(forKey: subscription) }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Returns once the connection has closed (or at once if it has).
    func waitUntilClosed() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let closed = state.withLock { state in
                if !state.closed { state.closedWaiters.append(continuation) }
                return state.closed
            }
            if closed { continuation.resume() }
        }
    }

    // MARK: - From nats.c's callback thread

    func connectionLost() {
        let closing = state.withLock { $0.closing }
        logger.log(level: closing ? .debug : .warning, closing ? "NATS connection closing" : "NATS connection lost; reconnecting",
                   metadata: ["nats.address": "\(address)"])
        broadcast(.disconnected)
    }

    /// The connection is being closed on purpose (its loss is then no news).
    func willClose() {
        state.withLock { $0.closing = true }
    }

    func reconnected(to url: String) {
        logger.notice("NATS connection re-established", metadata: ["nats.url": "\(url)"])
        let observers = state.withLock { Array($0.reconnectObservers.values) }
        for observer in observers { observer() }
        broadcast(.reconnected(url: url))
    }

    /// The connection is closed: tells every stream, then ends them. Only the first call does
    /// anything.
    func closed() {
        let ending: (listeners: [AsyncStream<NATSConnection.Event>.Continuation], waiters: [CheckedContinuation<Void, Never>])? =
            state.withLock { state in
                guard !state.closed else { return nil }
                state.closed = true
                defer {
                    state.listeners = [:]
                    state.closedWaiters = []
                    state.reconnectObservers = [:]
                }
                return (Array(state.listeners.values), state.closedWaiters)
            }
        guard let ending else { return }
        logger.info("NATS connection closed", metadata: ["nats.address": "\(address)"])
        for listener in ending.listeners {
            listener.yield(.closed)
            listener.finish()
        }
        for waiter in ending.waiters { waiter.resume() }
    }

    func asynchronousError(_ status: natsStatus, subscription: LibraryHandle?) {
        let subject = subscription.flatMap { handle in state.withLock { $0.subjects[handle] } }
        let what = status == NATS_SLOW_CONSUMER
            ? "slow consumer: messages dropped on \(subject ?? "a subscription")"
            : "asynchronous error on the NATS connection" + (subject.map { " (subscription to \($0))" } ?? "")
        let error = NATSError(status, "\(what) to \(address)", code: .library, withDetail: false, address: address, subject: subject)
        logger.error("\(error)", metadata: ["nats.address": "\(address)"])
        broadcast(.error(error))
    }

    private func broadcast(_ event: NATSConnection.Event) {
        let listeners = state.withLock { $0.closed ? [] : Array($0.listeners.values) }
        for listener in listeners { listener.yield(event) }
    }
}
