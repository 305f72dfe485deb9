import CSQLite
import Synchronization

// MARK: Commits of the runtime's state store, counted from outside
//
// The runtime's `CheckpointWriter` counts its commits and writes, but keeps them internal. The
// same counts are read here through SQLite's own public hooks instead: an automatic extension
// (`sqlite3_auto_extension`) runs for every connection this process opens afterwards — the
// runtime's store included — and installs a commit hook on it. Each commit then records how
// many rows the connection changed since the previous one (`sqlite3_total_changes64`): the
// writes of that group commit. The hook returns 0, so the commit goes ahead unchanged; it costs
// one mutex and an array append per commit.

/// Commits and writes on one SQLite connection, by the file it opened.
final class CommitCounter: Sendable {
    let path: String
    private struct Counts {
        var totalChanges: Int64 = 0
        /// Rows changed by each commit, in order.
        var batches: [Int32] = []
    }
    private let connection: UInt
    private let counts = Mutex(Counts())

    init(path: String, connection: OpaquePointer) {
        self.path = path
        self.connection = UInt(bitPattern: Int(bitPattern: connection))
        counts.withLock { $0.totalChanges = sqlite3_total_changes64(connection) }
    }

    /// From the commit hook (the connection's thread, inside its commit).
    fileprivate func didCommit() {
        let total = sqlite3_total_changes64(OpaquePointer(bitPattern: connection))
        counts.withLock { counts in
            counts.batches.append(Int32(clamping: total - counts.totalChanges))
            counts.totalChanges = total
        }
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
