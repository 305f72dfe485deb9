#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// State guarded by a pthread mutex, with a condition variable to wait on it: for the threads of
/// this module (the blocking-call threads and the key-value watch threads), which must block
/// without Swift concurrency and wake when another thread changes the state.
final class ThreadCondition<State>: @unchecked Sendable {
    // @unchecked Sendable: `state` is only read or written with `mutex` held (in `withLock` and
    // `wait`); the mutex and condition are allocated once, never moved, freed in deinit.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var state: State

    init(_ initial: State) {
        state = initial
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Timed waits measure the monotonic clock, which a change of the wall clock leaves alone.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `body` with the state locked, then wakes every waiter so that it checks its predicate
    /// again.
    func withLock<Result>(_ body: (inout State) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(condition)
            pthread_mutex_unlock(mutex)
        }
        return try body(&state)
    }

    /// Blocks the calling thread until `ready` holds or `timeout` has passed (nil: no limit), then
    /// runs `body` with the state still locked and returns its result. `body` learns whether
    /// `ready` held.
    func wait<Result>(
        until ready: (borrowing State) -> Bool, timeout: Duration? = nil,
        then body: (inout State, _ ready: Bool) throws -> Result
    ) rethrows -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        if let timeout {
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let (seconds, attoseconds) = timeout.components
            var nanoseconds = Int(deadline.tv_nsec) + Int(attoseconds / 1_000_000_000)
            deadline.tv_sec += Int(seconds) + nanoseconds / 1_000_000_000
            nanoseconds %= 1_000_000_000
            deadline.tv_nsec = nanoseconds
            while !ready(state) {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
            }
        } else {
            while !ready(state) { pthread_cond_wait(condition, mutex) }
        }
        return try body(&state, ready(state))
    }
}
