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
///
/// A handler that never returns keeps its thread. So that it cannot take the runtime with it,
/// ``growPastStuckThreads()`` (called periodically) starts another thread for each one busy
/// longer than ``stuckAfter`` while work waits, up to `maxThreads`; threads past the base count
/// end once they are idle again. ``busyWork`` tells who has been busy for how long, and
/// ``stop(waitingUpTo:)`` never waits for a thread that does not come back.
final class WorkerPool: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is guarded by `mutex` (with its three
    // conditions); `completions`, `baseThreads` and `maxThreads` are set in init.
    private struct Leader {
        var thread: pthread_t
        /// When the leader stopped polling to run handlers (monotonic ns); 0 while polling.
        var workingSince: UInt64
    }

    /// One thread of the pool (by its index in ``slots``).
    private enum Slot {
        /// No thread (it ended, or was never started): the index may be used again.
        case free
        /// Polling, watching or waiting for work.
        case idle
        /// Running `work` since `since` (monotonic ns).
        case busy(since: UInt64, work: any Schedulable)
        /// Its loop ended at ``stop(waitingUpTo:)``: joinable.
        case finished
    }

    /// Work a thread has been running for a while (``busyWork``).
    struct Busy {
        var work: any Schedulable
        /// How long it has been running.
        var elapsed: Duration
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
    /// ``stop(waitingUpTo:)`` returned: a thread coming back from a handler after that runs
    /// nothing more (the plugins may be gone) and ends.
    private var stopped = false
    /// The threads, by slot (nil where the slot is free or the thread detached itself).
    private var threads: [NativeThread?] = []
    private var slots: [Slot] = []
    /// Threads started and not ended, and how many of them are in work.
    private var alive = 0
    private var busyCount = 0
    /// Signalled when a thread ends (``stop(waitingUpTo:)`` waits on it).
    private let exitCondition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let name: String

    /// The threads the pool keeps: the handler threads asked for, plus the reader.
    let baseThreads: Int
    /// The most threads it grows to past stuck handlers.
    let maxThreads: Int
    /// How long a thread must have been in one unit of work before it counts as stuck, and
    /// another is started in its place (while work waits).
    let stuckAfter: UInt64

    /// - Parameters:
    ///   - threads: threads that run handlers (one more is started, so that one can always be
    ///     reading from the host).
    ///   - maxThreads: handler threads it may grow to while handlers are stuck (at least
    ///     `threads`).
    ///   - stuckAfter: how long a unit of work runs before its thread counts as stuck.
    init(threads: Int, maxThreads: Int? = nil, stuckAfter: Duration = .milliseconds(500), name: String = "agentd-worker") {
        self.name = name
        baseThreads = max(1, threads) + 1
        self.maxThreads = max(baseThreads, (maxThreads ?? 4 * max(1, threads)) + 1)
        let (seconds, attoseconds) = stuckAfter.components
        self.stuckAfter = UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        for condition in [workCondition, watchdogCondition, exitCondition] {
            condition.initialize(to: pthread_cond_t())
            var attributes = pthread_condattr_t()
            pthread_condattr_init(&attributes)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
            pthread_cond_init(condition, &attributes)
            pthread_condattr_destroy(&attributes)
        }
        pthread_mutex_lock(mutex)
        for _ in 0..<baseThreads { startThread() }
        pthread_mutex_unlock(mutex)
    }

    deinit {
        pthread_cond_destroy(workCondition)
        pthread_cond_destroy(watchdogCondition)
        pthread_cond_destroy(exitCondition)
        pthread_mutex_destroy(mutex)
        workCondition.deallocate()
        watchdogCondition.deallocate()
        exitCondition.deallocate()
        mutex.deallocate()
    }

    /// Starts a thread in the first free slot (`mutex` held).
    private func startThread() {
        let index = slots.firstIndex { if case .free = $0 { return true } else { return false } } ?? slots.count
        if index == slots.count {
            slots.append(.idle)
            threads.append(nil)
        } else {
            slots[index] = .idle
        }
        alive += 1
        threads[index] = NativeThread.start(name: "\(name)-\(index)", stackSize: 4 << 20) { [self] in loop(index) }
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

    private func loop(_ index: Int) {
        pthread_mutex_lock(mutex)
        var detach = false
        while true {
            if stopped { break }
            if leader == nil && !completionsDrained {
                lead(index)
                continue
            }
            if let agent = queue.popFirst() {
                run(agent, in: index)
                continue
            }
            if stopping && completionsDrained { break }
            // A thread started past a stuck one ends once more than the base count are free.
            if alive > baseThreads && alive - busyCount > baseThreads && !stopping {
                detach = true
                break
            }
            // (While stopping, the leader is about to see the drained queue: just wait for it.
            // `watch` would return at once — a busy loop holding the mutex the leader needs.)
            if leader != nil && !stopping && !completionsDrained, case .none = watchdog {
                watch(index)
                continue
            }
            idleWorkers += 1
            pthread_cond_wait(workCondition, mutex)
            idleWorkers -= 1
        }
        alive -= 1
        if detach {
            // Nobody joins it: its slot is free for another thread.
            slots[index] = .free
            threads[index] = nil
            pthread_detach(pthread_self())
        } else {
            slots[index] = .finished
        }
        pthread_cond_broadcast(exitCondition)
        pthread_mutex_unlock(mutex)
    }

    /// Runs one unit of work with `mutex` released, its thread marked busy meanwhile.
    private func run(_ work: any Schedulable, in index: Int) {
        slots[index] = .busy(since: Self.now(), work: work)
        busyCount += 1
        pthread_mutex_unlock(mutex)
        work.runNext()
        pthread_mutex_lock(mutex)
        busyCount -= 1
        slots[index] = .idle
    }

    /// Polls the queue and runs what its completions bring, until another thread takes
    /// over (this one was away too long) or the queue is drained.
    private func lead(_ index: Int) {
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
                    run(agent, in: index)
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
    private func watch(_ index: Int) {
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
                lead(index)
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

    // MARK: Stuck threads

    /// Starts threads in place of those stuck in one unit of work for longer than
    /// ``stuckAfter``, while work waits and no thread is free for it: as many as bring the
    /// threads not stuck back to the base count, up to ``maxThreads``. Returns how many it
    /// started.
    @discardableResult
    func growPastStuckThreads() -> Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard !stopping, !queue.isEmpty, idleWorkers == 0 else { return 0 }
        let now = Self.now()
        var stuck = 0
        for slot in slots {
            if case .busy(let since, _) = slot, now &- since >= stuckAfter { stuck += 1 }
        }
        let wanted = min(baseThreads - (alive - stuck), maxThreads - alive)
        guard wanted > 0 else { return 0 }
        for _ in 0..<wanted { startThread() }
        return wanted
    }

    /// The work running now on the pool's threads, with how long each has been running;
    /// longest first.
    var busyWork: [Busy] {
        pthread_mutex_lock(mutex)
        let now = Self.now()
        var busy: [Busy] = []
        for slot in slots {
            if case .busy(let since, let work) = slot { busy.append(Busy(work: work, elapsed: .nanoseconds(Int64(now &- since)))) }
        }
        pthread_mutex_unlock(mutex)
        return busy.sorted { $0.elapsed > $1.elapsed }
    }

    /// Threads alive now (the base count, plus those started past stuck ones).
    var threadCount: Int {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return alive
    }

    // MARK: Stopping

    /// Finishes the queued work, then stops the threads and waits for them — those still in a
    /// unit of work up to `margin` (a handler that does not return is never waited for
    /// longer), the others until they end. The connection using ``completions`` must be shut down first; this drains and
    /// closes the queue.
    /// - Returns: the work still running on threads that did not end within `margin`
    ///   (their threads are left to it; they run nothing else afterwards).
    @discardableResult
    func stop(waitingUpTo margin: Duration = .seconds(2)) -> [any Schedulable] {
        completions.shutdown()
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_broadcast(workCondition)
        pthread_cond_broadcast(watchdogCondition)
        var deadline = timespec()
        clock_gettime(CLOCK_MONOTONIC, &deadline)
        let (seconds, attoseconds) = margin.components
        deadline.tv_sec += Int(seconds)
        deadline.tv_nsec += Int(attoseconds / 1_000_000_000)
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        // A thread not in work (the reader draining the queue, an idle one) is always waited
        // for; past the margin, one still in a unit of work is not.
        var pastMargin = false
        while alive > 0 && !(pastMargin && alive == busyCount) {
            if pastMargin {
                pthread_cond_wait(exitCondition, mutex)
            } else if pthread_cond_timedwait(exitCondition, mutex, &deadline) == ETIMEDOUT {
                pastMargin = true
            }
        }
        stopped = true
        var ended: [NativeThread] = []
        var running: [any Schedulable] = []
        for (index, slot) in slots.enumerated() {
            switch slot {
            case .finished:
                if let thread = threads[index] { ended.append(thread) }
                threads[index] = nil
                slots[index] = .free
            case .busy(_, let work):
                running.append(work)
            case .idle, .free:
                break
            }
        }
        pthread_mutex_unlock(mutex)
        for thread in ended { thread.join() }
        return running
    }
}
