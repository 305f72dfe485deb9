import Foundation
import DequeModule
#if canImport(Glibc)
import Glibc
#endif

/// Handler threads: run agents whose mailboxes have work, one message at a time per agent.
///
/// An agent is in the run queue at most once (its mailbox's `scheduled` state), so one agent's
/// handlers never overlap while different agents run in parallel.
final class WorkerPool: @unchecked Sendable {
    // @unchecked Sendable: `queue` and `stopping` are guarded by `mutex`/`condition`.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue = Deque<AgentInstance>()
    private var stopping = false
    private var running = 0
    private let stopped = DispatchGroup()

    init(threads: Int, name: String = "agentd-worker") {
        mutex.initialize(to: pthread_mutex_t())
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        for index in 0..<max(1, threads) {
            stopped.enter()
            let thread = Thread { [self] in
                loop()
                stopped.leave()
            }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 4 << 20
            thread.start()
        }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Queues an agent that has a message to handle.
    func schedule(_ agent: AgentInstance) {
        pthread_mutex_lock(mutex)
        queue.append(agent)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    private func loop() {
        while true {
            pthread_mutex_lock(mutex)
            while queue.isEmpty && !stopping { pthread_cond_wait(condition, mutex) }
            guard let agent = queue.popFirst() else {
                pthread_mutex_unlock(mutex)
                return
            }
            pthread_mutex_unlock(mutex)
            agent.runNext()
        }
    }

    /// Finishes the queued work, then stops the threads and waits for them.
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        stopped.wait()
    }
}
