/// Counts live things (calls, pending accepts) so that shutdown can wait until none is left.
final class LiveCounter: @unchecked Sendable {
    // @unchecked Sendable: `count`, `waiters` and `nextWaiter` are guarded by `lock`.
    private let lock = Lock()
    private var count = 0
    private var nextWaiter = 0
    private var waiters: [Int: CheckedContinuation<Bool, Never>] = [:]
    /// Timers of waits with a timeout, cancelled when the count reaches zero first.
    private var timers: [Int: Task<Void, Never>] = [:]

    func increment() { lock.withLock { count += 1 } }

    func decrement() {
        let (ready, timers): ([CheckedContinuation<Bool, Never>], [Task<Void, Never>]) = lock.withLock {
            count -= 1
            guard count == 0 else { return ([], []) }
            defer {
                waiters = [:]
                self.timers = [:]
            }
            return (Array(waiters.values), Array(self.timers.values))
        }
        for timer in timers { timer.cancel() }
        for waiter in ready { waiter.resume(returning: true) }
    }

    var value: Int { lock.withLock { count } }

    /// Returns once the count is zero.
    func waitUntilZero() async {
        _ = await waitUntilZero(timeout: nil)
    }

    /// Returns true once the count is zero, or false when `timeout` passes first.
    func waitUntilZero(timeout: Duration?) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let id: Int? = lock.withLock {
                if count == 0 { return nil }
                nextWaiter += 1
                waiters[nextWaiter] = continuation
                return nextWaiter
            }
            guard let id else {
                continuation.resume(returning: true)
                return
            }
            if let timeout {
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    guard !Task.isCancelled else { return }
                    let expired = self.lock.withLock { () -> CheckedContinuation<Bool, Never>? in
                        self.timers[id] = nil
                        return self.waiters.removeValue(forKey: id)
                    }
                    expired?.resume(returning: false)
                }
                let done = lock.withLock { () -> Bool in
                    guard waiters[id] != nil else { return true }
                    timers[id] = timer
                    return false
                }
                if done { timer.cancel() }
            }
        }
    }
}
