import CSQLite
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// MARK: Commits of the runtime's state store, counted from outside
//
// The runtime's `CheckpointWriter` counts its commits and writes, but keeps them internal. The
// same counts are read here through SQLite's own public hooks instead: an automatic extension
// (`sqlite3_auto_extension`) runs for every connection this process opens afterwards — the
// runtime's store included — and installs a commit hook on it. Each commit then records how
// many rows the connection changed since the previous one (`sqlite3_total_changes64`): the
// writes of that group commit. The hook returns 0, so the commit goes ahead unchanged; it costs
// one mutex and an array append per commit.
//
// For timelines the extension also installs a statement trace (`sqlite3_trace_v2`): while a
// counter is recording, it stamps (CLOCK_MONOTONIC) the start of each `BEGIN IMMEDIATE` (the
// writer thread has taken a batch), the commit hook (the batch's writes are done, the commit
// starts) and the end of each `COMMIT` (the commit is durable as `sync` says). When not
// recording, each statement costs the trace one atomic load.

/// Commits and writes on one SQLite connection, by the file it opened.
final class CommitCounter: Sendable {
    let path: String
    private struct Counts {
        var totalChanges: Int64 = 0
        /// Rows changed by each commit, in order.
        var batches: [Int32] = []
        /// While recording: when each transaction began, reached its commit, and committed.
        var timeline = Timeline()
    }

    /// Stamps (CLOCK_MONOTONIC ns) of the transactions while recording.
    struct Timeline {
        var begun: [UInt64] = []
        var committing: [UInt64] = []
        var committed: [UInt64] = []
    }

    private let connection: UInt
    private let counts = Mutex(Counts())
    let recording = Atomic<Bool>(false)

    init(path: String, connection: OpaquePointer) {
        self.path = path
        self.connection = UInt(bitPattern: Int(bitPattern: connection))
        counts.withLock { $0.totalChanges = sqlite3_total_changes64(connection) }
    }

    /// From the commit hook (the connection's thread, inside its commit).
    fileprivate func didCommit() {
        let total = sqlite3_total_changes64(OpaquePointer(bitPattern: connection))
        let now = recording.load(ordering: .relaxed) ? nowNs() : 0
        counts.withLock { counts in
            counts.batches.append(Int32(clamping: total - counts.totalChanges))
            counts.totalChanges = total
            if now != 0 { counts.timeline.committing.append(now) }
        }
    }

    /// From the statement trace: a transaction began (`true`) or committed.
    fileprivate func didRun(begin: Bool) {
        guard recording.load(ordering: .relaxed) else { return }
        let now = nowNs()
        counts.withLock { counts in
            if begin { counts.timeline.begun.append(now) } else { counts.timeline.committed.append(now) }
        }
    }

    /// Starts recording a fresh timeline.
    func startTimeline() {
        counts.withLock { $0.timeline = Timeline() }
        recording.store(true, ordering: .relaxed)
    }

    /// Stops recording; the timeline recorded.
    func stopTimeline() -> Timeline {
        recording.store(false, ordering: .relaxed)
        return counts.withLock { $0.timeline }
    }

    /// The batches (rows per commit) since `mark` (a count of commits).
    func batches(since mark: Int = 0) -> [Int32] {
        counts.withLock { Array($0.batches.dropFirst(mark)) }
    }

    /// Commits so far (a mark for ``batches(since:)``).
    var commits: Int { counts.withLock { $0.batches.count } }
}

/// What a stretch of commits did: how many, how many writes, how they were grouped.
struct CommitSummary {
    var commits: Int
    var writes: Int
    /// Commits that wrote nothing (a schema statement, a transaction with only conflicts).
    var empty: Int
    var largest: Int
    var writesPerCommit: Double { commits == 0 ? .nan : Double(writes) / Double(commits) }

    init(_ batches: [Int32]) {
        commits = batches.count
        writes = batches.reduce(0) { $0 + Int($1) }
        empty = batches.filter { $0 == 0 }.count
        largest = Int(batches.max() ?? 0)
    }

    var text: String {
        commits == 0 ? "no commits" : String(format: "%d writes in %d commits (%.2f per commit, largest %d)",
                                             writes, commits, writesPerCommit, largest)
    }
}

extension CommitSummary {
    /// A summary of counts made elsewhere (the runtime's agentStatistics, another process).
    init(commits: Int, writes: Int, empty: Int, largest: Int) {
        self.init([])
        self.commits = commits
        self.writes = writes
        self.empty = empty
        self.largest = largest
    }
}

/// The counters of every connection opened since ``install()``.
enum SQLiteCommits {
    /// Process-wide by necessity: an automatic extension receives no context of ours.
    private static let counters = Mutex<[CommitCounter]>([])
    private static let installed = Atomic<Bool>(false)

    /// Installs the automatic extension (once); connections opened before are not counted.
    static func install() {
        guard !installed.exchange(true, ordering: .relaxed) else { return }
        let entry: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafePointer<CChar>?>?, OpaquePointer?) -> Int32 = {
            db, _, _ in
            guard let db else { return SQLITE_OK }
            let name = sqlite3_db_filename(db, "main").map { String(cString: $0) } ?? ""
            let counter = CommitCounter(path: name, connection: db)
            SQLiteCommits.counters.withLock { $0.append(counter) }
            let hook: @convention(c) (UnsafeMutableRawPointer?) -> Int32 = { context in
                guard let context else { return 0 }
                Unmanaged<CommitCounter>.fromOpaque(context).takeUnretainedValue().didCommit()
                return 0
            }
            // The counter stays in `counters` for the life of the process: the pointer stays valid.
            _ = sqlite3_commit_hook(db, hook, Unmanaged.passUnretained(counter).toOpaque())
            let trace: @convention(c) (UInt32, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Int32 = {
                kind, context, statement, _ in
                guard let context else { return 0 }
                let counter = Unmanaged<CommitCounter>.fromOpaque(context).takeUnretainedValue()
                guard counter.recording.load(ordering: .relaxed), let text = sqlite3_sql(OpaquePointer(statement)) else { return 0 }
                if kind == UInt32(SQLITE_TRACE_STMT) && strncmp(text, "BEGIN", 5) == 0 {
                    counter.didRun(begin: true)
                } else if kind == UInt32(SQLITE_TRACE_PROFILE) && strncmp(text, "COMMIT", 6) == 0 {
                    counter.didRun(begin: false)
                }
                return 0
            }
            _ = sqlite3_trace_v2(db, UInt32(SQLITE_TRACE_STMT | SQLITE_TRACE_PROFILE), trace,
                                 Unmanaged.passUnretained(counter).toOpaque())
            return SQLITE_OK
        }
        sqlite3_auto_extension(unsafeBitCast(entry, to: (@convention(c) () -> Void).self))
    }

    /// The newest connection opened on the file at `path` (SQLite may resolve the path: the
    /// match is on its last component).
    static func counter(for path: String) -> CommitCounter? {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return counters.withLock { $0.last { $0.path == path || $0.path.hasSuffix("/" + name) } }
    }
}
