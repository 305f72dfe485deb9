import AgentCore
import CSQLite
import Foundation
import Synchronization

/// The embedded state store: one SQLite file with a write-ahead log. How durable a commit is
/// is the ``Durability`` it was opened with: a committed write survives the process being
/// killed either way; with ``Durability/full`` it also survives the machine losing power.
///
/// One connection per store, used by one thread at a time; several stores (or processes) may
/// open the same file — SQLite serialises their writes, and the revision check fences them.
///
/// Table `agent_state(agent_type, agent_key, revision, state)`; `PRAGMA user_version` is the
/// schema version (1). A file written by a newer schema is refused rather than misread.
public final class SQLiteStateStore: StateStore {
    /// The schema this code writes and reads.
    public static let schemaVersion: Int32 = 1

    /// What a commit survives once it returns.
    public enum Durability: String, Sendable, CaseIterable {
        /// The process being killed (the write is in the operating system's hands: SQLite's
        /// `synchronous = NORMAL`). A power loss may undo the last commits; the file stays
        /// consistent. About 25 µs per commit on the reference machine.
        case normal
        /// The machine losing power too (every commit waits for the disk: `synchronous =
        /// FULL`). About 0.5 ms per commit on the reference machine.
        case full
    }

    public let path: String
    public let durability: Durability
    private let database: Mutex<Database>
    /// A second connection for `get`: with the write-ahead log a read never waits for a
    /// commit (which may be syncing the disk) on the other connection.
    private let reader: Mutex<Database>

    /// Opens (and creates, with its folder) the store at `path`.
    /// - Parameter busyTimeout: how long a write waits for another process holding the file.
    /// - Throws: ``StateStoreError`` naming the file: it cannot be created or opened (folder
    ///   missing and not creatable, no permission), is not an SQLite database, is damaged, or
    ///   was written by a newer schema.
    public init(path: String, durability: Durability = .full, busyTimeout: Duration = .seconds(5)) throws(StateStoreError) {
        self.path = path
        self.durability = durability
        let folder = (path as NSString).deletingLastPathComponent
        if !folder.isEmpty && !FileManager.default.fileExists(atPath: folder) {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw StateStoreError(.cannotOpen, store: path, "cannot create its folder \(folder): \(error.localizedDescription)")
            }
        }
        database = Mutex(try Database(path: path, durability: durability, busyTimeout: busyTimeout))
        reader = Mutex(try Database(path: path, durability: durability, busyTimeout: busyTimeout))
    }

    deinit {
        database.withLock { $0.close() }
        reader.withLock { $0.close() }
    }

    public func get(_ agent: AgentID) throws(StateStoreError) -> StoredState? {
        try reader.withLock { (db) throws(StateStoreError) -> StoredState? in try db.read(agent) }
    }

    public func put(_ agent: AgentID, _ bytes: [UInt8], ifRevision expected: UInt64) throws(StateStoreError) -> UInt64 {
        try database.withLock { (db) throws(StateStoreError) -> UInt64 in try db.write(agent, bytes, ifRevision: expected) }
    }

    public func put(_ writes: [StateWrite]) throws(StateStoreError) -> [Result<UInt64, StateStoreError>] {
        try database.withLock { (db) throws(StateStoreError) -> [Result<UInt64, StateStoreError>] in
            try db.transaction { (db) throws(StateStoreError) -> [Result<UInt64, StateStoreError>] in
                var results: [Result<UInt64, StateStoreError>] = []
                for write in writes {
                    do throws(StateStoreError) {
                        results.append(.success(try db.write(write.agent, write.bytes, ifRevision: write.expectedRevision)))
                    } catch {
                        // A conflict fails this write only; anything else fails the commit.
                        guard error.code == .conflict else { throw error }
                        results.append(.failure(error))
                    }
                }
                return results
            }
        }
    }

    public func delete(_ agent: AgentID, ifRevision expected: UInt64?) throws(StateStoreError) -> Bool {
        try database.withLock { (db) throws(StateStoreError) -> Bool in try db.delete(agent, ifRevision: expected) }
    }
}

/// One SQLite connection and its prepared statements (guarded by the store's mutex).
private struct Database: ~Copyable {
    private let path: String
    private var handle: OpaquePointer?
    private var selectState: OpaquePointer?
    private var insertState: OpaquePointer?
    private var updateState: OpaquePointer?
    private var deleteState: OpaquePointer?

    init(path: String, durability: SQLiteStateStore.Durability, busyTimeout: Duration) throws(StateStoreError) {
        self.path = path
        var opened: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &opened, flags, nil)
        handle = opened
        guard status == SQLITE_OK else {
            let failure = Self.error(status, opened, path: path, doing: "opening it")
            sqlite3_close_v2(opened)
            handle = nil
            throw failure
        }
        do {
            sqlite3_busy_timeout(opened, Int32(clamping: busyTimeout.components.seconds * 1000
                + busyTimeout.components.attoseconds / 1_000_000_000_000_000))
            sqlite3_extended_result_codes(opened, 1)
            try prepareSchema(durability)
            selectState = try prepare("SELECT revision, state FROM agent_state WHERE agent_type = ?1 AND agent_key = ?2")
            insertState = try prepare(
                "INSERT INTO agent_state (agent_type, agent_key, revision, state) VALUES (?1, ?2, 1, ?3) ON CONFLICT DO NOTHING")
            updateState = try prepare(
                "UPDATE agent_state SET state = ?3, revision = revision + 1 WHERE agent_type = ?1 AND agent_key = ?2 AND revision = ?4")
            deleteState = try prepare(
                "DELETE FROM agent_state WHERE agent_type = ?1 AND agent_key = ?2 AND (?3 IS NULL OR revision = ?3)")
        } catch {
            close()
            throw error
        }
    }

    mutating func close() {
        for statement in [selectState, insertState, updateState, deleteState] { sqlite3_finalize(statement) }
        (selectState, insertState, updateState, deleteState) = (nil, nil, nil, nil)
        sqlite3_close_v2(handle)
        handle = nil
    }

    // MARK: Schema

    private func prepareSchema(_ durability: SQLiteStateStore.Durability) throws(StateStoreError) {
        // WAL: readers never wait for the writer; FULL: a commit is on disk when it returns,
        // NORMAL: in the operating system's hands (the WAL is synced at checkpoints).
        let mode = try scalarText("PRAGMA journal_mode = WAL")
        guard mode.lowercased() == "wal" else {
            throw StateStoreError(.cannotOpen, store: path, "cannot use a write-ahead log (journal mode stays \(mode)); is the folder writable?")
        }
        try execute(durability == .full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL")
        let version = Int32(try scalarText("PRAGMA user_version")) ?? 0
        switch version {
        case 0:
            try execute("""
                CREATE TABLE IF NOT EXISTS agent_state (
                    agent_type TEXT NOT NULL,
                    agent_key TEXT NOT NULL,
                    revision INTEGER NOT NULL,
                    state BLOB NOT NULL,
                    PRIMARY KEY (agent_type, agent_key)
                ) WITHOUT ROWID
                """)
            try execute("PRAGMA user_version = \(SQLiteStateStore.schemaVersion)")
        case SQLiteStateStore.schemaVersion:
            break
        default:
            throw StateStoreError(.cannotOpen, store: path, "it was written by a newer agentd (schema \(version); this one reads schema \(SQLiteStateStore.schemaVersion))")
        }
    }

    private func execute(_ sql: String) throws(StateStoreError) {
        let status = sqlite3_exec(handle, sql, nil, nil, nil)
        guard status == SQLITE_OK else { throw Self.error(status, handle, path: path, doing: "running \(sql.split(separator: "\n")[0])") }
    }

    private func scalarText(_ sql: String) throws(StateStoreError) -> String {
        let statement = try prepare(sql)
        defer { sqlite3_finalize(statement) }
        let status = sqlite3_step(statement)
        guard status == SQLITE_ROW else {
            if status == SQLITE_DONE { return "" }
            throw Self.error(status, handle, path: path, doing: "running \(sql)")
        }
        return sqlite3_column_text(statement, 0).map { String(cString: $0) } ?? ""
    }

    private func prepare(_ sql: String) throws(StateStoreError) -> OpaquePointer? {
        var statement: OpaquePointer?
        let status = sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard status == SQLITE_OK else { throw Self.error(status, handle, path: path, doing: "preparing \(sql)") }
        return statement
    }

    // MARK: Reading and writing

    func read(_ agent: AgentID) throws(StateStoreError) -> StoredState? {
        let statement = selectState
        defer { sqlite3_reset(statement) }
        bind(statement, agent)
        switch sqlite3_step(statement) {
        case SQLITE_ROW:
            let revision = UInt64(sqlite3_column_int64(statement, 0))
            let count = Int(sqlite3_column_bytes(statement, 1))
            let bytes = count == 0 ? [] : Array(UnsafeRawBufferPointer(start: sqlite3_column_blob(statement, 1), count: count))
            return StoredState(bytes: bytes, revision: revision)
        case SQLITE_DONE:
            return nil
        case let status:
            throw Self.error(status, handle, path: path, doing: "reading the state of \(agent)")
        }
    }

    func write(_ agent: AgentID, _ bytes: [UInt8], ifRevision expected: UInt64) throws(StateStoreError) -> UInt64 {
        let statement = expected == 0 ? insertState : updateState
        let changed: Bool = try {
            () throws(StateStoreError) -> Bool in
            defer {
                sqlite3_reset(statement)
                sqlite3_clear_bindings(statement)
            }
            bind(statement, agent)
            let status = bytes.withUnsafeBytes { raw in
                // SQLITE_TRANSIENT: SQLite copies the bytes before the bind returns.
                sqlite3_bind_blob64(statement, 3, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), UInt64(raw.count),
                                    unsafeBitCast(-1, to: sqlite3_destructor_type.self))
            }
            guard status == SQLITE_OK else { throw Self.error(status, handle, path: path, doing: "writing the state of \(agent)") }
            if expected != 0 { sqlite3_bind_int64(statement, 4, Int64(bitPattern: expected)) }
            let stepped = sqlite3_step(statement)
            guard stepped == SQLITE_DONE else { throw Self.error(stepped, handle, path: path, doing: "writing the state of \(agent)") }
            return sqlite3_changes(handle) == 1
        }()
        guard changed else {
            let found = try read(agent)?.revision ?? 0
            throw StateStoreError(
                .conflict, store: path,
                "the state of \(agent) is at revision \(found), not \(expected): another writer came first", foundRevision: found)
        }
        return expected + 1
    }

    func delete(_ agent: AgentID, ifRevision expected: UInt64?) throws(StateStoreError) -> Bool {
        let statement = deleteState
        defer {
            sqlite3_reset(statement)
            sqlite3_clear_bindings(statement)
        }
        bind(statement, agent)
        if let expected { sqlite3_bind_int64(statement, 3, Int64(bitPattern: expected)) }
        let status = sqlite3_step(statement)
        guard status == SQLITE_DONE else { throw Self.error(status, handle, path: path, doing: "deleting the state of \(agent)") }
        return sqlite3_changes(handle) == 1
    }

    /// Runs `body` in one transaction: committed if it returns, rolled back if it throws.
    func transaction<Result>(_ body: (borrowing Database) throws(StateStoreError) -> Result) throws(StateStoreError) -> Result {
        try execute("BEGIN IMMEDIATE")
        let result: Result
        do {
            result = try body(self)
            try execute("COMMIT")
        } catch {
            sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
            throw error
        }
        return result
    }

    private func bind(_ statement: OpaquePointer?, _ agent: AgentID) {
        // SQLITE_TRANSIENT: SQLite copies the text before the bind returns.
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        sqlite3_bind_text64(statement, 1, agent.type, UInt64(agent.type.utf8.count), transient, UInt8(SQLITE_UTF8))
        sqlite3_bind_text64(statement, 2, agent.key, UInt64(agent.key.utf8.count), transient, UInt8(SQLITE_UTF8))
    }

    /// An error naming the file, what was being done, and SQLite's reason.
    static func error(_ status: Int32, _ handle: OpaquePointer?, path: String, doing: String) -> StateStoreError {
        let reason = handle.flatMap { sqlite3_errmsg($0) }.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(status))
        let code: StateStoreError.Code
        switch status & 0xff {
        case SQLITE_BUSY, SQLITE_LOCKED: code = .busy
        case SQLITE_FULL: code = .full
        case SQLITE_CORRUPT, SQLITE_NOTADB: code = .corrupt
        case SQLITE_CANTOPEN, SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH: code = .cannotOpen
        default: code = .failed
        }
        let hint: String
        switch code {
        case .busy: hint = " (another process holds the file; is a second runtime using the same [state] path?)"
        case .corrupt: hint = " (the file is not an SQLite database, or it is damaged)"
        case .full: hint = " (no space left on the device)"
        default: hint = ""
        }
        return StateStoreError(code, store: path, "\(doing) failed: \(reason)\(hint)")
    }
}
