import CSQLite

/// Sets `PRAGMA user_version` of the SQLite file at `path` (to fake a file of another schema).
func markSchema(_ path: String, version: Int) throws {
    struct Failure: Error { var status: Int32 }
    var handle: OpaquePointer?
    let status = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE, nil)
    defer { sqlite3_close_v2(handle) }
    guard status == SQLITE_OK else { throw Failure(status: status) }
    let set = sqlite3_exec(handle, "PRAGMA user_version = \(version)", nil, nil, nil)
    guard set == SQLITE_OK else { throw Failure(status: set) }
}
