import AgentCore
import AgentState
import Foundation
import Testing

@Suite("SQLiteStateStore: agents' state in one SQLite file")
struct SQLiteStateStoreTests {
    /// A fresh folder per test, removed afterwards.
    final class Folder {
        let path = NSTemporaryDirectory() + "agentd-state-test-\(UUID().uuidString)"
        var database: String { path + "/state/agents.db" }
        deinit { try? FileManager.default.removeItem(atPath: path) }
    }

    let counter = AgentID(type: "counter", key: "a")

    @Test("a state is written at revision 1, read back, and rewritten only from the revision read")
    func revisions() throws {
        let folder = Folder()
        let store = try SQLiteStateStore(path: folder.database)
        #expect(try store.get(counter) == nil)
        #expect(try store.put(counter, [1, 2, 3], ifRevision: 0) == 1)
        #expect(try store.get(counter) == StoredState(bytes: [1, 2, 3], revision: 1))
        #expect(try store.put(counter, [4], ifRevision: 1) == 2)
        // A writer that read revision 1 comes late: refused, naming what it found.
        let stale = #expect(throws: StateStoreError.self) { try store.put(counter, [9], ifRevision: 1) }
        #expect(stale?.code == .conflict)
        #expect(stale?.foundRevision == 2)
        #expect(stale?.description.contains(folder.database) == true)
        // Creating what exists is a conflict too.
        let exists = #expect(throws: StateStoreError.self) { try store.put(counter, [9], ifRevision: 0) }
        #expect(exists?.foundRevision == 2)
        #expect(try store.get(counter) == StoredState(bytes: [4], revision: 2))
        // An empty state is a state.
        #expect(try store.put(counter, [], ifRevision: 2) == 3)
        #expect(try store.get(counter) == StoredState(bytes: [], revision: 3))
    }

    @Test("states are per agent type and key, keys of any text included")
    func keys() throws {
        let folder = Folder()
        let store = try SQLiteStateStore(path: folder.database)
        let ids = [AgentID(type: "counter", key: "a"), AgentID(type: "counter", key: "b"),
                   AgentID(type: "other", key: "a"), AgentID(type: "counter", key: "ключ / with 'quotes'\n")]
        for (index, id) in ids.enumerated() { _ = try store.put(id, [UInt8(index)], ifRevision: 0) }
        for (index, id) in ids.enumerated() { #expect(try store.get(id)?.bytes == [UInt8(index)]) }
    }

    @Test("a delete removes the state, and only at the expected revision when one is given")
    func delete() throws {
        let folder = Folder()
        let store = try SQLiteStateStore(path: folder.database)
        _ = try store.put(counter, [1], ifRevision: 0)
        #expect(try store.delete(counter, ifRevision: 7) == false)
        #expect(try store.get(counter) != nil)
        #expect(try store.delete(counter, ifRevision: 1))
        #expect(try store.get(counter) == nil)
        #expect(try store.delete(counter, ifRevision: nil) == false)
        #expect(try store.put(counter, [2], ifRevision: 0) == 1)
    }

    @Test("what was committed is there when the file is opened again")
    func survivesReopening() throws {
        let folder = Folder()
        do {
            let store = try SQLiteStateStore(path: folder.database)
            _ = try store.put(counter, Array("{\"count\": 41}".utf8), ifRevision: 0)
            _ = try store.put(counter, Array("{\"count\": 42}".utf8), ifRevision: 1)
        }
        let reopened = try SQLiteStateStore(path: folder.database)
        #expect(try reopened.get(counter) == StoredState(bytes: Array("{\"count\": 42}".utf8), revision: 2))
    }

    @Test("a batch commits once; a conflicting write fails alone")
    func batch() throws {
        let folder = Folder()
        let store = try SQLiteStateStore(path: folder.database)
        _ = try store.put(AgentID(type: "t", key: "taken"), [0], ifRevision: 0)
        let results = try store.put([
            StateWrite(agent: AgentID(type: "t", key: "1"), bytes: [1], expectedRevision: 0),
            StateWrite(agent: AgentID(type: "t", key: "taken"), bytes: [9], expectedRevision: 0),
            StateWrite(agent: AgentID(type: "t", key: "2"), bytes: [2], expectedRevision: 0),
        ])
        #expect(results.count == 3)
        #expect(try results[0].get() == 1)
        #expect(throws: StateStoreError.self) { try results[1].get() }
        #expect(try results[2].get() == 1)
        #expect(try store.get(AgentID(type: "t", key: "taken"))?.bytes == [0])
        #expect(try store.get(AgentID(type: "t", key: "2"))?.bytes == [2])
    }

    @Test("two stores on one file (as two processes would be) fence each other by revision")
    func twoWriters() throws {
        let folder = Folder()
        let first = try SQLiteStateStore(path: folder.database)
        let second = try SQLiteStateStore(path: folder.database)
        let read = try first.get(counter)?.revision ?? 0
        _ = try second.put(counter, [2], ifRevision: read)
        #expect(throws: StateStoreError.self) { try first.put(counter, [1], ifRevision: read) }
        #expect(try first.get(counter) == StoredState(bytes: [2], revision: 1))
    }

    @Test("writers on many threads lose no update: each retries from what it read")
    func concurrentIncrements() async throws {
        let folder = Folder()
        let store = try SQLiteStateStore(path: folder.database)
        let workers = 4, increments = 50
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<workers {
                group.addTask {
                    for _ in 0..<increments {
                        while true {
                            let current = try store.get(counter)
                            let value = current.map { Int($0.bytes[0]) | Int($0.bytes[1]) << 8 } ?? 0
                            let next = value + 1
                            do {
                                _ = try store.put(counter, [UInt8(next & 0xff), UInt8(next >> 8)], ifRevision: current?.revision ?? 0)
                                break
                            } catch let error as StateStoreError where error.code == .conflict {
                                continue
                            }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let final = try #require(try store.get(counter))
        #expect(Int(final.bytes[0]) | Int(final.bytes[1]) << 8 == workers * increments)
        #expect(final.revision == UInt64(workers * increments))
    }

    @Test("a file that is not a database is refused at open, naming the file")
    func notADatabase() throws {
        let folder = Folder()
        try FileManager.default.createDirectory(atPath: folder.path + "/state", withIntermediateDirectories: true)
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: folder.database))
        let refused = #expect(throws: StateStoreError.self) { _ = try SQLiteStateStore(path: folder.database) }
        #expect(refused?.code == .corrupt)
        #expect(refused?.description.contains(folder.database) == true)
        #expect(refused?.description.contains("not an SQLite database") == true)
    }

    @Test("a folder that cannot be created is refused at open, naming it")
    func folderInTheWay() throws {
        let folder = Folder()
        try FileManager.default.createDirectory(atPath: folder.path, withIntermediateDirectories: true)
        // A regular file where the store's folder should be.
        try Data("x".utf8).write(to: URL(fileURLWithPath: folder.path + "/state"))
        let refused = #expect(throws: StateStoreError.self) { _ = try SQLiteStateStore(path: folder.database) }
        #expect(refused?.code == .cannotOpen)
        #expect(refused?.description.contains(folder.database) == true)
    }

    @Test("a file written by a newer schema is refused rather than misread")
    func newerSchema() throws {
        let folder = Folder()
        do {
            _ = try SQLiteStateStore(path: folder.database)
        }
        // Mark the file as schema 2 through SQLite itself (the sqlite3 tool may be absent).
        try markSchema(folder.database, version: 2)
        let refused = #expect(throws: StateStoreError.self) { _ = try SQLiteStateStore(path: folder.database) }
        #expect(refused?.description.contains("newer agentd (schema 2") == true)
    }
}
