import AgentCore
import AgentState
import AgentMetrics
import CoreMetrics
import GRPCTransport
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Writes agents' checkpoints to the state store in group commits: everything submitted while
/// a commit runs goes into the next one (one durable flush for all of them), so many agents
/// checkpointing at once cost about one commit, not one each.
///
/// With `inline` (commits that do not wait for the disk), a write submitted while no commit
/// runs is committed at once on the submitting thread — the handler's worker — and its
/// completion runs there too: an RPC's answer leaves without two thread hand-offs (about
/// 100 µs each on the reference VM). Writes submitted meanwhile wait for the writer thread,
/// which commits them together. Without `inline` every commit is the writer thread's, so that
/// handler threads never wait for the disk.
///
/// Completions run in submission order for each agent (an agent has at most one write in
/// flight), once the commit is done or has failed: they release held RPC answers.
final class CheckpointWriter: @unchecked Sendable {
    // @unchecked Sendable: `queue` and `stopping` are touched only with `mutex` held; the
    // pthread mutex and condition are allocated once, never moved, freed in deinit; `thread`
    // is set in init and cleared by `stop()`, which the runtime calls once, from one task.
    struct Job: Sendable {
        var write: StateWrite
        var done: @Sendable (Result<UInt64, StateStoreError>) -> Void
        var submitted = ContinuousClock.now
    }

    let store: any StateStore
    /// The most writes one commit takes (bounds a commit's latency under a burst).
    let batchLimit: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var queue: [Job] = []
    private var stopping = false
    /// A commit runs (inline or on the writer thread).
    private var committing = false
    private let inline: Bool
    private var thread: NativeThread?
    private let commits = Atomic<Int>(0)
    private let written = Atomic<Int>(0)
    /// Each checkpoint's time from submission to commit (or failure), when metrics are kept.
    private let latency: CoreMetrics.Timer?

    init(store: any StateStore, inline: Bool, batchLimit: Int = 1024, latency: CoreMetrics.Timer? = nil) {
        self.latency = latency
        self.store = store
        self.inline = inline
        self.batchLimit = batchLimit
        mutex.initialize(to: pthread_mutex_t())
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        thread = NativeThread.start(name: "agentd-state") { [self] in run() }
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Commits so far, and writes in them (for logs and benchmarks).
    var counts: (commits: Int, writes: Int) { (commits.load(ordering: .relaxed), written.load(ordering: .relaxed)) }

    /// Queues a write; `done` runs once it is committed or has failed. After ``stop()`` the
    /// write fails at once.
    func submit(_ write: StateWrite, done: @escaping @Sendable (Result<UInt64, StateStoreError>) -> Void) {
        let job = Job(write: write, done: done)
        pthread_mutex_lock(mutex)
        guard !stopping else {
            pthread_mutex_unlock(mutex)
            done(.failure(StateStoreError(.failed, store: "\(store)", "the runtime is shutting down")))
            return
        }
        if inline && !committing && queue.isEmpty {
            committing = true
            pthread_mutex_unlock(mutex)
            commit([job])
            pthread_mutex_lock(mutex)
            committing = false
            // The writer thread may wait for this commit to end (writes queued meanwhile, or stop()).
            pthread_cond_signal(condition)
            pthread_mutex_unlock(mutex)
            return
        }
        queue.append(job)
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
    }

    /// Writes what is queued, then ends the thread.
    func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        pthread_cond_signal(condition)
        pthread_mutex_unlock(mutex)
        thread?.join()
        thread = nil
    }

    private func run() {
        while true {
            pthread_mutex_lock(mutex)
            while (queue.isEmpty || committing) && !stopping { pthread_cond_wait(condition, mutex) }
            while committing { pthread_cond_wait(condition, mutex) }
            if queue.isEmpty {
                pthread_mutex_unlock(mutex)
                return
            }
            let count = min(queue.count, batchLimit)
            let batch = Array(queue.prefix(count))
            queue.removeFirst(count)
            committing = true
            pthread_mutex_unlock(mutex)
            commit(batch)
            pthread_mutex_lock(mutex)
            committing = false
            pthread_mutex_unlock(mutex)
        }
    }

    private func commit(_ batch: [Job]) {
        let results: [Result<UInt64, StateStoreError>]
        do throws(StateStoreError) {
            results = try store.put(batch.map(\.write))
            commits.add(1, ordering: .relaxed)
            written.add(batch.count, ordering: .relaxed)
        } catch {
            results = Array(repeating: .failure(error), count: batch.count)
        }
        if let latency {
            let now = ContinuousClock.now
            for job in batch { latency.recordDuration(now - job.submitted) }
        }
        for (job, result) in zip(batch, results) { job.done(result) }
    }
}
