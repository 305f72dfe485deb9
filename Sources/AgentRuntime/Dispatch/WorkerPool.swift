import DequeModule
#if canImport(Glibc)
import Glibc
#endif
import GRPCTransport

/// Work the pool runs: an agent with messages in its mailbox. It is queued at most once at a
/// time (the agent's own state says whether it is), and ``runNext()`` handles one message.
protocol Schedulable: AnyObject, Sendable {
    func runNext()
}

/// The runtime's handler threads, which also take turns at reading from the host.
///
/// Agents whose mailboxes have work wait in a run queue (each at most once: its mailbox's
/// `scheduled` state), so one agent's handlers never overlap while different agents run in
/// parallel.
///
/// The connection to the host uses ``completions``, a completion queue no transport thread
/// polls: one of these threads, the *leader*, polls it. A message from the host is decoded and
/// queued by the leader, which then runs the handler itself — no hand-off to another thread,
/// no wake-up between the socket and the plugin — and goes back to polling. So that a slow or
/// blocking handler cannot stop the reading, another thread, the *watchdog*, checks every
/// five milliseconds while there is traffic: once the leader has been away from the queue for
/// ``takeoverAfter``, the watchdog becomes the leader and the old one finishes its handler as
/// an ordinary worker. When no thread is left to watch (all the others are in handlers), the
/// leader does not run handlers itself: the queue is always read. Work queued from other
/// threads (a plugin answering a pending call, timers) wakes an idle worker.
final class WorkerPool: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is guarded by `mutex` (with its two
    // conditions); `completions` and `threads` are set in init.
    private struct Leader {
        var thread: pthread_t
        /// When the leader stopped polling to run handlers (monotonic ns); 0 while polling.
        var workingSince: UInt64
    }

    private enum Watchdog {
        case none
        /// A thread waits on `watchdogCondition`, waking each tick.
        case ticking
        /// It waits without ticks (no work for a while); the leader wakes it when it works.
        case parked
    }

    /// The queue the connection's calls complete on.
    let completions = CompletionQueueGroup(ownerPolled: ())
    /// How long the leader may be away from the queue before another thread takes over.
    let takeoverAfter: UInt64 = 5_000_000
    /// How often the watchdog looks while there is traffic. (Each look wakes a thread, which
    /// on a small machine competes with the message path: 200 a second is little, and a
    /// blocked handler delays the others by 5–10 ms once.)
    private let tick: Int64 = 5_000_000
    /// Ticks without the leader working after which the watchdog stops ticking (0.1 s); the
    /// leader then wakes it when it next runs a handler (one wake-up after a quiet spell).
    private let ticksBeforeParking = 20
    /// How long the leader waits in the queue before looking at the run queue again (work
    /// other threads queued while every worker was busy).
    private let pollTimeoutMilliseconds: Int64 = 100

    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let workCondition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let watchdogCondition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue = Deque<any Schedulable>()
    private var leader: Leader?
    private var watchdog = Watchdog.none
    /// Leader work periods started (the watchdog's sign of activity).
    private var workPeriods: UInt64 = 0
    private var completionsDrained = false
    /// Threads waiting on `workCondition`.
    private var idleWorkers = 0
    private var stopping = false
    private var threads: [NativeThread] = []

    /// - Parameter threads: threads that run handlers (one more is started, so that one can
    ///   always be reading from the host).
    init(threads: Int, name: String = "agentd-worker") {
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        for condition in [workCondition, watchdogCondition] {
            condition.initialize(to: pthread_cond_t())
            var attributes = pthread_condattr_t()
            pthread_condattr_init(&attributes)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
            pthread_cond_init(condition, &attributes)
            pthread_condattr_destroy(&attributes)
        }
        pthread_mutex_lock(mutex)
        for index in 0..<(max(1, threads) + 1) {
            self.threads.append(NativeThread.start(name: "\(name)-\(index)", stackSize: 4 << 20) { [self] in loop() })
        }
        pthread_mutex_unlock(mutex)
    }

    deinit {
        pthread_cond_destroy(workCondition)
        pthread_cond_destroy(watchdogCondition)
        pthread_mutex_destroy(mutex)
        workCondition.deallocate()
        watchdogCondition.deallocate()
        mutex.deallocate()
    }

    /// Queues an agent that has a message to handle.
    func schedule(_ agent: any Schedulable) {
        pthread_mutex_lock(mutex)
        queue.append(agent)
        // The leader runs (or hands on) what it queues itself, after the completion at hand.
        // Anyone else — a worker inside a handler answering another agent's call, a plugin's
        // thread, a timer — wakes an idle worker, or else the watchdog (which takes the work
        // if the leader is reading, or keeps watching if it is busy).
        let current = pthread_self()
        let fromLeader = leader.map { pthread_equal($0.thread, current) != 0 } ?? false
        if !fromLeader {
            if idleWorkers > 0 {
                pthread_cond_signal(workCondition)
            } else if someoneWatches {
                pthread_cond_signal(watchdogCondition)
            }
            // Else every thread is busy: the first to finish takes it.
        }
        pthread_mutex_unlock(mutex)
    }

    // MARK: Threads (all with `mutex` held unless stated)

    private func loop() {
        pthread_mutex_lock(mutex)
        while true {
            if leader == nil && !completionsDrained {
                lead()
                continue
            }
            if let agent = queue.popFirst() {
                pthread_mutex_unlock(mutex)
                agent.runNext()
                pthread_mutex_lock(mutex)
                continue
            }
            if stopping && completionsDrained { break }
            // (While stopping, the leader is about to see the drained queue: just wait for it.
            // `watch` would return at once — a busy loop holding the mutex the leader needs.)
            if leader != nil && !stopping && !completionsDrained, case .none = watchdog {
                watch()
                continue
            }
            idleWorkers += 1
            pthread_cond_wait(workCondition, mutex)
            idleWorkers -= 1
        }
        pthread_mutex_unlock(mutex)
    }

    /// Polls the queue and runs what its completions bring, until another thread takes
    /// over (this one was away too long) or the queue is drained.
    private func lead() {
        let me = pthread_self()
        leader = Leader(thread: me, workingSince: 0)
        while true {
            // Receives deferred until the last completion's work was done start now; what they
            // deliver (a call's end, say) may queue work: then only look, do not wait.
            pthread_mutex_unlock(mutex)
            completions.resumeDeferredReceives()
            pthread_mutex_lock(mutex)
            let timeout = queue.isEmpty ? pollTimeoutMilliseconds : 0
            pthread_mutex_unlock(mutex)
            let outcome = completions.poll(timeoutMilliseconds: timeout)
            pthread_mutex_lock(mutex)
            if outcome == .shutDown {
                completionsDrained = true
                leader = nil
                pthread_cond_broadcast(workCondition)
                pthread_cond_broadcast(watchdogCondition)
                return
            }
            // Run what the completions brought on this thread, while another thread watches
            // and could take over the reading. Otherwise (every other thread busy in a
            // handler, or the watchdog gone to run work) the work goes to an idle worker or
            // waits for the first busy one to finish, and this one keeps reading: the
            // connection, and an embedded host's routing for other workers, never stall.
            if someoneWatches && !queue.isEmpty {
                leader?.workingSince = Self.now()
                workPeriods &+= 1
                if case .parked = watchdog { pthread_cond_signal(watchdogCondition) }
                while someoneWatches, let agent = queue.popFirst() {
                    pthread_mutex_unlock(mutex)
                    agent.runNext()
                    pthread_mutex_lock(mutex)
                    // Replaced while away: carry on as a worker. (A replaced thread leads
                    // again only after it returned from here.)
                    guard let current = leader, pthread_equal(current.thread, me) != 0 else { return }
                }
                leader?.workingSince = 0
            }
            if !queue.isEmpty && idleWorkers > 0 {
                // An idle worker takes it (or becomes the watchdog, and the next runs here).
                pthread_cond_signal(workCondition)
            }
        }
    }

    /// Watches the leader: ticks while it works, takes over when it is away too long.
    private func watch() {
        watchdog = .ticking
        var seenPeriods = workPeriods
        var quietTicks = 0
        while leader != nil && !completionsDrained && !stopping {
            if case .parked = watchdog {
                pthread_cond_wait(watchdogCondition, mutex)
                watchdog = .ticking
                quietTicks = 0
            } else {
                var deadline = timespec()
                clock_gettime(CLOCK_MONOTONIC, &deadline)
                deadline.tv_nsec += Int(tick)
                if deadline.tv_nsec >= 1_000_000_000 {
                    deadline.tv_sec += 1
                    deadline.tv_nsec -= 1_000_000_000
                }
                pthread_cond_timedwait(watchdogCondition, mutex, &deadline)
            }
            guard let current = leader else { break }
            if current.workingSince != 0 && Self.now() &- current.workingSince >= takeoverAfter {
                // The leader is stuck in a handler: this thread reads from now on, and another
                // idle thread (if any) becomes the watchdog.
                watchdog = .none
                pthread_cond_signal(workCondition)
                lead()
                return
            }
            if !queue.isEmpty {
                // Work waits. While the leader reads, go and run it (the leader then keeps
                // reading and runs nothing itself until a thread watches again). While the
                // leader is in a handler, keep watching: wake an idle worker for it if there is
                // one, or the work waits for the first busy thread to finish.
                if current.workingSince == 0 { break }
                if idleWorkers > 0 { pthread_cond_signal(workCondition) }
            }
            if workPeriods != seenPeriods || current.workingSince != 0 {
                seenPeriods = workPeriods
                quietTicks = 0
            } else {
                quietTicks += 1
                if quietTicks >= ticksBeforeParking { watchdog = .parked }
            }
        }
        watchdog = .none
    }

    /// A thread watches the leader (and could take over the reading).
    private var someoneWatches: Bool {
        if case .none = watchdog { return false }
        return true
    }

    private static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Finishes the queued work, then stops the threads and waits for them. The connection
    /// using ``completions`` must be shut down first; this drains and closes the queue.
    func stop() {
        completions.shutdown()
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(workCondition)
        pthread_cond_broadcast(watchdogCondition)
        let threads = self.threads
        pthread_mutex_unlock(mutex)
        for thread in threads { thread.join() }
    }
}
