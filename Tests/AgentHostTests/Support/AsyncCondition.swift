import Foundation

/// Shared state that test callbacks mutate from poller threads, and that a test awaits a
/// condition on, with a deadline (never a sleep).
final class AsyncCondition<State: Sendable>: @unchecked Sendable {
    // @unchecked Sendable: `state` and `waiters` are guarded by `lock`.
    private let lock = NSLock()
    private var state: State
    private var waiters: [Int: (predicate: (State) -> Bool, continuation: CheckedContinuation<State?, Never>)] = [:]
    private var nextID = 0

    init(_ initial: State) { state = initial }

    var value: State { lock.lock(); defer { lock.unlock() }; return state }

    func mutate(_ change: (inout State) -> Void) {
        lock.lock()
        change(&state)
        let snapshot = state
        var ready: [CheckedContinuation<State?, Never>] = []
        for (id, waiter) in waiters where waiter.predicate(snapshot) {
            ready.append(waiter.continuation)
            waiters[id] = nil
        }
        lock.unlock()
        for continuation in ready { continuation.resume(returning: snapshot) }
    }

    private func expire(_ id: Int) {
        lock.lock()
        let expired = waiters.removeValue(forKey: id)
        lock.unlock()
        expired?.continuation.resume(returning: nil)
    }

    /// Waits until `predicate` holds; returns the state then, or nil if `timeout` passed first.
    func wait(timeout: Duration = .seconds(10), until predicate: @escaping (State) -> Bool) async -> State? {
        await withCheckedContinuation { continuation in
            lock.lock()
            if predicate(state) {
                let snapshot = state
                lock.unlock()
                continuation.resume(returning: snapshot)
                return
            }
            nextID += 1
            let id = nextID
            waiters[id] = (predicate, continuation)
            lock.unlock()
            Task {
                try? await Task.sleep(for: timeout)
                self.expire(id)
            }
        }
    }
}
