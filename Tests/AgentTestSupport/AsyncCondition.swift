import Foundation

/// Shared state that test callbacks mutate from poller threads, and that a test awaits a
/// condition on, with a deadline (never a sleep).
public final class AsyncCondition<State: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `state`, `waiters` and `nextID` are guarded by `lock`.
    private struct Waiter {
        var predicate: (State) -> Bool
        var continuation: CheckedContinuation<State?, Never>
        /// Resumes the waiter with nil at the deadline; cancelled when the condition comes
        /// first, so that no timer outlives its wait.
        var timer: Task<Void, Never>?
    }

    private let lock = NSLock()
    private var state: State
    private var waiters: [Int: Waiter] = [:]
    private var nextID = 0

    public init(_ initial: State) { state = initial }

    public var value: State { lock.withLock { state } }

    public func mutate(_ change: (inout State) -> Void) {
        let (snapshot, ready): (State, [Waiter]) = lock.withLock {
            change(&state)
            var ready: [Waiter] = []
            for (id, waiter) in waiters where waiter.predicate(state) {
                ready.append(waiter)
                waiters[id] = nil
            }
            return (state, ready)
        }
        for waiter in ready {
            waiter.timer?.cancel()
            waiter.continuation.resume(returning: snapshot)
        }
    }

    private func expire(_ id: Int) {
        let expired = lock.withLock { waiters.removeValue(forKey: id) }
        expired?.continuation.resume(returning: nil)
    }

    /// Waits until `predicate` holds; returns the state then, or nil if `timeout` passed first.
    public func wait(timeout: Duration = .seconds(10), until predicate: @escaping (State) -> Bool) async -> State? {
        await withCheckedContinuation { continuation in
            let id: Int? = lock.withLock {
                if predicate(state) { return nil }
                nextID += 1
                waiters[nextID] = Waiter(predicate: predicate, continuation: continuation, timer: nil)
                return nextID
            }
            guard let id else {
                continuation.resume(returning: value)
                return
            }
            let timer = Task { [weak self] in
                try? await Task.sleep(for: timeout)
                guard !Task.isCancelled else { return }
                self?.expire(id)
            }
            let fired = lock.withLock { () -> Bool in
                guard waiters[id] != nil else { return true }
                waiters[id]?.timer = timer
                return false
            }
            if fired { timer.cancel() }
        }
    }
}
