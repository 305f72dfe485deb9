import Synchronization

/// The answers to a connection's requests: one wildcard subscription on `<prefix>.*`, each
/// request waiting under its own token (`<prefix>.<token>` is its reply subject) with a deadline.
///
/// A request is resolved exactly once, by whichever comes first: its answer, the server's "no
/// responders", its deadline, a failed publish, or cancellation; the others find nothing.
final class RequestInbox: Sendable {
    let prefix: String
    private let address: String

    private struct Pending {
        var subject: String
        var continuation: CheckedContinuation<NATSMessage, any Error>
        var timer: Task<Void, Never>?
    }

    /// A request's token from ``newReplySubject()`` until it is resolved.
    private enum Entry {
        /// Made, not waiting yet.
        case made
        /// Failed (cancelled) before it began to wait.
        case failedEarly(any Error)
        case waiting(Pending)
    }

    private struct State {
        var nextToken: UInt64 = 0
        var entries: [UInt64: Entry] = [:]
        /// Set once the connection closes: every request from then on fails with it.
        var closed: NATSError?
    }

    private let state = Mutex(State())

    init(prefix: String, address: String) {
        self.prefix = prefix
        self.address = address
    }

    func newReplySubject() -> (token: UInt64, subject: String) {
        let token = state.withLock { state in
            state.nextToken += 1
            state.entries[state.nextToken] = .made
            return state.nextToken
        }
        return (token, "\(prefix).\(token)")
    }

    /// Waits for the answer to `token`, for at most `timeout`.
    func expect(
        _ token: UInt64, subject: String, timeout: Duration, _ continuation: CheckedContinuation<NATSMessage, any Error>
    ) {
        let early: (any Error)? = state.withLock { state in
            if let closed = state.closed {
                state.entries[token] = nil
                return closed
            }
            if case .failedEarly(let error) = state.entries[token] {
                state.entries[token] = nil
                return error
            }
            state.entries[token] = .waiting(Pending(subject: subject, continuation: continuation, timer: nil))
            return nil
        }
        if let early {
            continuation.resume(throwing: early)
            return
        }
        let address = address
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            self?.fail(token, with: NATSError(
                code: .timeout, message: "request on \(subject) to NATS at \(address): no answer within \(timeout)",
                address: address, subject: subject))
        }
        let resolved = state.withLock { state -> Bool in
            guard case .waiting(var pending) = state.entries[token] else { return true }
            pending.timer = timer
            state.entries[token] = .waiting(pending)
            return false
        }
        if resolved { timer.cancel() }
    }

    private func take(_ token: UInt64, orRecord error: (any Error)? = nil) -> Pending? {
        state.withLock { state in
            switch state.entries[token] {
            case .waiting(let pending):
                state.entries[token] = nil
                return pending
            case .made:
                if let error { state.entries[token] = .failedEarly(error) }
                return nil
            case .failedEarly, nil:
                return nil
            }
        }
    }

    /// An answer arrived on the wildcard subscription (a nats.c delivery thread).
    func deliver(_ message: NATSMessage) {
        guard message.subject.hasPrefix(prefix), let dot = message.subject.lastIndex(of: "."),
              let token = UInt64(message.subject[message.subject.index(after: dot)...])
        else { return }
        guard let pending = take(token) else { return }
        pending.timer?.cancel()
        if message.isNoResponders {
            pending.continuation.resume(throwing: NATSError(
                code: .noResponders, message: "request on \(pending.subject) to NATS at \(address): nothing subscribes to it",
                address: address, subject: pending.subject))
        } else {
            pending.continuation.resume(returning: message)
        }
    }

    func fail(_ token: UInt64, with error: any Error) {
        guard let pending = take(token, orRecord: error) else { return }
        pending.timer?.cancel()
        pending.continuation.resume(throwing: error)
    }

    /// Fails every request waiting now (the connection closes).
    func failAll(with error: NATSError) {
        let waiting: [Pending] = state.withLock { state in
            state.closed = error
            var waiting: [Pending] = []
            for (token, entry) in state.entries {
                if case .waiting(let pending) = entry {
                    waiting.append(pending)
                    state.entries[token] = nil
                }
            }
            return waiting
        }
        for pending in waiting {
            pending.timer?.cancel()
            pending.continuation.resume(throwing: error)
        }
    }
}
