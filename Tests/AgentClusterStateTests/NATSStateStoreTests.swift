import AgentCluster
import AgentClusterState
import AgentCore
import AgentState
import AgentTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("NATSStateStore: agents' state in a JetStream key-value bucket of a real nats-server")
struct NATSStateStoreTests {
    let counter = AgentID(type: "counter", key: "a")

    @Test("a state is written at revision 1, read back, and rewritten only from the revision read")
    func revisions() async throws {
        let (server, connection) = try await start()
        let store = try await NATSStateStore.open(connection: connection)
        #expect(try store.get(counter) == nil)
        #expect(try store.put(counter, [1, 2, 3], ifRevision: 0) == 1)
        #expect(try store.get(counter) == StoredState(bytes: [1, 2, 3], revision: 1))
        #expect(try store.put(counter, [4], ifRevision: 1) == 2)
        // A writer that read revision 1 comes late: refused, naming what it found.
        let stale = #expect(throws: StateStoreError.self) { try store.put(counter, [9], ifRevision: 1) }
        #expect(stale?.code == .conflict)
        #expect(stale?.foundRevision == 2)
        #expect(stale?.description.contains(server.url) == true)
        #expect(stale?.description.contains("agentd-state") == true)
        #expect(stale?.description.contains("the state of counter/a is at revision 2, not 1") == true)
        // Creating what exists is a conflict too; so is writing from a revision never reached.
        let exists = #expect(throws: StateStoreError.self) { try store.put(counter, [9], ifRevision: 0) }
        #expect(exists?.foundRevision == 2)
        let ahead = #expect(throws: StateStoreError.self) { try store.put(counter, [9], ifRevision: 7) }
        #expect(ahead?.foundRevision == 2)
        #expect(try store.get(counter) == StoredState(bytes: [4], revision: 2))
        // An empty state is a state.
        #expect(try store.put(counter, [], ifRevision: 2) == 3)
        #expect(try store.get(counter) == StoredState(bytes: [], revision: 3))
        // Revisions are the agent's own, one a write, whatever else the bucket holds.
        let other = AgentID(type: "counter", key: "b")
        for revision in 0..<5 as Range<UInt64> {
            #expect(try store.put(other, [UInt8(revision)], ifRevision: revision) == revision + 1)
        }
        #expect(try store.put(counter, [5], ifRevision: 3) == 4)
        // In the bucket: the revision as 8 bytes big-endian, then the state.
        let raw = try #require(try await store.bucket.get(NATSStateStore.key(for: counter)))
        #expect(raw.value == [0, 0, 0, 0, 0, 0, 0, 4, 5])
        await connection.close()
    }

    @Test("states are per agent type and key, keys of any text included")
    func keys() async throws {
        let (server, connection) = try await start()  // the server lives as long as the test
        let store = try await NATSStateStore.open(connection: connection)
        let ids = [AgentID(type: "counter", key: "a"), AgentID(type: "counter", key: "b"),
                   AgentID(type: "other", key: "a"), AgentID(type: "counter", key: "ключ / with 'quotes'\n"),
                   AgentID(type: "counter", key: ""), AgentID(type: "counter", key: "a/b"),
                   AgentID(type: "counter", key: "with spaces"), AgentID(type: "counter", key: "🙂.*>"),
                   AgentID(type: "counter.a", key: "b"), AgentID(type: "counter", key: "a.b")]
        for (index, id) in ids.enumerated() { #expect(try store.put(id, [UInt8(index)], ifRevision: 0) == 1) }
        for (index, id) in ids.enumerated() { #expect(try store.get(id)?.bytes == [UInt8(index)]) }
        #expect(Set(ids.map(NATSStateStore.key(for:))).count == ids.count)
        #expect(NATSStateStore.key(for: AgentID(type: "counter", key: "")) == "Y291bnRlcg.=")
        #expect(NATSStateStore.key(for: AgentID(type: "counter", key: "a/b")) == "Y291bnRlcg.YS9i")
        #expect(NATSStateStore.key(for: AgentID(type: "t", key: "\u{ff}\u{fe}")) == "dA.w7_Dvg")
        await connection.close()
        withExtendedLifetime(server) {}
    }

    @Test("a delete removes the state, only at the expected revision when one is given; a write from 0 creates it again")
    func delete() async throws {
        let (server, connection) = try await start()  // the server lives as long as the test
        let store = try await NATSStateStore.open(connection: connection)
        _ = try store.put(counter, [1], ifRevision: 0)
        #expect(try store.delete(counter, ifRevision: 7) == false)
        #expect(try store.get(counter) != nil)
        #expect(try store.delete(counter, ifRevision: 1))
        #expect(try store.get(counter) == nil)
        #expect(try store.delete(counter, ifRevision: nil) == false)
        #expect(try store.delete(counter, ifRevision: 1) == false)
        // Over the delete marker: created again, at revision 1.
        #expect(try store.put(counter, [2], ifRevision: 0) == 1)
        let deleted = #expect(throws: StateStoreError.self) { try store.put(counter, [3], ifRevision: 5) }
        #expect(deleted?.foundRevision == 1)
        #expect(try store.put(counter, [3], ifRevision: 1) == 2)
        #expect(try store.delete(counter, ifRevision: nil))
        #expect(try store.get(counter) == nil)
        let gone = #expect(throws: StateStoreError.self) { try store.put(counter, [4], ifRevision: 2) }
        #expect(gone?.code == .conflict)
        #expect(gone?.foundRevision == 0)
        #expect(try store.put(counter, [4], ifRevision: 0) == 1)
        await connection.close()
        withExtendedLifetime(server) {}
    }

    @Test("what was written is there for a store opened again on another connection")
    func survivesReopening() async throws {
        let (server, connection) = try await start()
        do {
            let store = try await NATSStateStore.open(connection: connection)
            _ = try store.put(counter, Array("{\"count\": 41}".utf8), ifRevision: 0)
            _ = try store.put(counter, Array("{\"count\": 42}".utf8), ifRevision: 1)
        }
        await connection.close()
        let again = try await connect(server)
        let reopened = try await NATSStateStore.open(connection: again)
        #expect(try reopened.get(counter) == StoredState(bytes: Array("{\"count\": 42}".utf8), revision: 2))
        await again.close()
    }

    @Test("a batch: a conflicting write fails alone; one agent's writes in order")
    func batch() async throws {
        let (server, connection) = try await start()  // the server lives as long as the test
        let store = try await NATSStateStore.open(connection: connection)
        _ = try store.put(AgentID(type: "t", key: "taken"), [0], ifRevision: 0)
        let results = try store.put([
            StateWrite(agent: AgentID(type: "t", key: "1"), bytes: [1], expectedRevision: 0),
            StateWrite(agent: AgentID(type: "t", key: "taken"), bytes: [9], expectedRevision: 0),
            StateWrite(agent: AgentID(type: "t", key: "2"), bytes: [2], expectedRevision: 0),
            StateWrite(agent: AgentID(type: "t", key: "2"), bytes: [3], expectedRevision: 1),
        ])
        #expect(results.count == 4)
        #expect(try results[0].get() == 1)
        let conflict = #expect(throws: StateStoreError.self) { try results[1].get() }
        #expect(conflict?.code == .conflict)
        #expect(conflict?.foundRevision == 1)
        #expect(conflict?.description.contains("t/taken") == true)
        #expect(try results[2].get() == 1)
        #expect(try results[3].get() == 2)
        #expect(try store.get(AgentID(type: "t", key: "taken"))?.bytes == [0])
        #expect(try store.get(AgentID(type: "t", key: "2")) == StoredState(bytes: [3], revision: 2))
        #expect(try store.put([]).isEmpty)

        // A larger batch, every write at once from what was read.
        let many = (0..<200).map { StateWrite(agent: AgentID(type: "many", key: "\($0)"), bytes: [UInt8($0 % 256)], expectedRevision: 0) }
        #expect(try store.put(many).map { try $0.get() } == Array(repeating: 1, count: 200))
        let again = many.map { StateWrite(agent: $0.agent, bytes: [7], expectedRevision: 1) }
        #expect(try store.put(again).map { try $0.get() } == Array(repeating: 2, count: 200))
        #expect(try store.get(AgentID(type: "many", key: "123")) == StoredState(bytes: [7], revision: 2))
        await connection.close()
        withExtendedLifetime(server) {}
    }

    @Test("two stores on two connections (as two runtimes would be) fence each other by revision")
    func twoWriters() async throws {
        let (server, firstConnection) = try await start()
        let secondConnection = try await connect(server)
        let first = try await NATSStateStore.open(connection: firstConnection)
        let second = try await NATSStateStore.open(connection: secondConnection)

        let read = try first.get(counter)?.revision ?? 0
        _ = try second.put(counter, [2], ifRevision: read)
        let fenced = #expect(throws: StateStoreError.self) { try first.put(counter, [1], ifRevision: read) }
        #expect(fenced?.code == .conflict)
        #expect(fenced?.foundRevision == 1)
        #expect(try first.get(counter) == StoredState(bytes: [2], revision: 1))

        // The first writes on (it remembers revision 1); the second, still at 1, is fenced off.
        #expect(try first.put(counter, [3], ifRevision: 1) == 2)
        let late = #expect(throws: StateStoreError.self) { try second.put(counter, [4], ifRevision: 1) }
        #expect(late?.foundRevision == 2)
        // The second takes over from what it reads now; the first's memory of revision 2 is out
        // of date, and its write from 2 is refused, naming 3.
        #expect(try second.put(counter, [4], ifRevision: 2) == 3)
        let outdated = #expect(throws: StateStoreError.self) { try first.put(counter, [5], ifRevision: 2) }
        #expect(outdated?.foundRevision == 3)
        #expect(try first.put(counter, [5], ifRevision: 3) == 4)

        // Deleted and created again by the second: revision 1 again, at another key-value
        // revision than the first remembers — the first's write from 1 stands, as in SQLite.
        let remembered = try #require(try first.get(counter))
        #expect(try second.delete(counter, ifRevision: remembered.revision))
        #expect(try first.put(counter, [6], ifRevision: 0) == 1)
        #expect(try second.delete(counter, ifRevision: 1))
        #expect(try second.put(counter, [7], ifRevision: 0) == 1)
        #expect(try first.put(counter, [8], ifRevision: 1) == 2)
        #expect(try second.get(counter) == StoredState(bytes: [8], revision: 2))
        // A delete from an out-of-date revision deletes nothing.
        #expect(try second.delete(counter, ifRevision: 1) == false)
        #expect(try first.get(counter) != nil)
        await firstConnection.close()
        await secondConnection.close()
    }

    @Test("writers on two stores and many tasks lose no update: each retries from what it read (no deadlock on Swift's pool either)")
    func concurrentIncrements() async throws {
        let (server, firstConnection) = try await start()
        let secondConnection = try await connect(server)
        let stores = [try await NATSStateStore.open(connection: firstConnection),
                      try await NATSStateStore.open(connection: secondConnection)]
        let workers = 6, increments = 25
        // Called from tasks of the cooperative pool, against the store's precondition, on purpose:
        // blocked pool threads must not starve the store's own steps.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<workers {
                let store = stores[worker % 2]
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
        let final = try #require(try stores[0].get(counter))
        #expect(Int(final.bytes[0]) | Int(final.bytes[1]) << 8 == workers * increments)
        #expect(final.revision == UInt64(workers * increments))
        await firstConnection.close()
        await secondConnection.close()
    }

    @Test("server stopped: calls fail at once, naming address, bucket and agent, and write nothing; server back: it works again")
    func serverStoppedAndBack() async throws {
        let (server, connection) = try await start()
        let store = try await NATSStateStore.open(connection: connection)
        #expect(try store.put(counter, [1], ifRevision: 0) == 1)

        server.stop()
        #expect(await poll(timeout: .seconds(10)) { connection.status != .connected })
        let clock = ContinuousClock()
        let started = clock.now
        let failed = #expect(throws: StateStoreError.self) { try store.put(counter, [2], ifRevision: 1) }
        #expect(failed?.code == .failed)
        for part in [server.url, "agentd-state", "counter/a", "not connected"] {
            #expect(failed?.description.contains(part) == true, "\(part) in \(failed?.description ?? "")")
        }
        let unread = #expect(throws: StateStoreError.self) { _ = try store.get(counter) }
        #expect(unread?.code == .failed)
        let batch = try store.put([StateWrite(agent: counter, bytes: [2], expectedRevision: 1),
                                   StateWrite(agent: AgentID(type: "t", key: "x"), bytes: [2], expectedRevision: 0)])
        for result in batch {
            #expect(throws: StateStoreError.self) { try result.get() }
        }
        let undeleted = #expect(throws: StateStoreError.self) { _ = try store.delete(counter, ifRevision: nil) }
        #expect(undeleted?.code == .failed)
        #expect(clock.now - started < store.deadline)

        try await server.restart()
        #expect(await poll(timeout: .seconds(10)) { connection.status == .connected })
        // Nothing of what failed was written meanwhile.
        #expect(try store.get(counter) == StoredState(bytes: [1], revision: 1))
        #expect(try store.get(AgentID(type: "t", key: "x")) == nil)
        #expect(try store.put(counter, [3], ifRevision: 1) == 2)
        await connection.close()
    }

    @Test("server not answering (stopped with SIGSTOP): a call fails within the JetStream timeout; answering again: it works again")
    func serverNotAnswering() async throws {
        let (server, connection) = try await start { $0.jetStreamTimeout = .seconds(1) }
        let store = try await NATSStateStore.open(connection: connection)
        #expect(try store.put(counter, [1], ifRevision: 0) == 1)

        let pid = server.pid
        #expect(kill(pid, SIGSTOP) == 0)
        // The signal is delivered later than kill() returns: wait until the server is stopped
        // (the test process is its parent, so waitpid reports the stop).
        var status: Int32 = 0
        while waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR {}
        #expect(status & 0xff == 0x7f, "stopped (status \(status))")
        let clock = ContinuousClock()
        let started = clock.now
        let failed = #expect(throws: StateStoreError.self) { try store.put(counter, [2], ifRevision: 1) }
        let took = clock.now - started
        #expect(kill(pid, SIGCONT) == 0)
        #expect(failed?.code == .failed)
        for part in [server.url, "agentd-state", "counter/a"] {
            #expect(failed?.description.contains(part) == true, "\(part) in \(failed?.description ?? "")")
        }
        #expect(took >= .milliseconds(900))
        #expect(took < store.deadline + .milliseconds(500))

        // The write that timed out may have happened once the server went on: either way the
        // revisions say so, and writing from what is read works.
        #expect(await poll(timeout: .seconds(10)) { connection.status == .connected && (try? store.get(counter)) != nil })
        let current = try #require(try store.get(counter))
        #expect(current == StoredState(bytes: [1], revision: 1) || current == StoredState(bytes: [2], revision: 2))
        #expect(try store.put(counter, [3], ifRevision: current.revision) == current.revision + 1)
        await connection.close()
    }

    @Test("open: a bucket of other settings, a bad bucket name, a closed connection are refused, naming address and bucket")
    func openRefused() async throws {
        let (server, connection) = try await start()
        _ = try await connection.createOrBindBucket(.init(name: "kept", history: 5))
        let mismatch = await #expect(throws: StateStoreError.self) {
            _ = try await NATSStateStore.open(connection: connection, bucket: "kept")
        }
        #expect(mismatch?.code == .cannotOpen)
        #expect(mismatch?.description.contains("bucket kept on \(server.url)") == true)
        #expect(mismatch?.description.contains("other settings") == true)
        let badName = await #expect(throws: StateStoreError.self) {
            _ = try await NATSStateStore.open(connection: connection, bucket: "no spaces")
        }
        #expect(badName?.code == .cannotOpen)
        #expect(badName?.description.contains("no spaces") == true)
        // The same settings bind.
        let store = try await NATSStateStore.open(connection: connection, bucket: "states")
        _ = try store.put(counter, [1], ifRevision: 0)
        let bound = try await NATSStateStore.open(connection: connection, bucket: "states")
        #expect(try bound.get(counter)?.revision == 1)
        #expect(bound.description == "bucket states on \(server.url)")
        await connection.close()
        let closed = await #expect(throws: StateStoreError.self) { _ = try await NATSStateStore.open(connection: connection) }
        #expect(closed?.code == .cannotOpen)
        let afterClose = #expect(throws: StateStoreError.self) { _ = try store.get(counter) }
        #expect(afterClose?.code == .failed)
    }

    @Test("a value not written by the store (shorter than its revision header) is reported as corrupt, naming the agent")
    func foreignValue() async throws {
        let (server, connection) = try await start()  // the server lives as long as the test
        let store = try await NATSStateStore.open(connection: connection)
        try await store.bucket.put(NATSStateStore.key(for: counter), value: [1, 2, 3])
        let corrupt = #expect(throws: StateStoreError.self) { _ = try store.get(counter) }
        #expect(corrupt?.code == .corrupt)
        #expect(corrupt?.description.contains("counter/a") == true)
        await connection.close()
        withExtendedLifetime(server) {}
    }
}

/// A nats-server with JetStream, and a connection to it.
private func start(
    _ configure: (inout NATSConnection.Options) -> Void = { _ in }
) async throws -> (NATSServer, NATSConnection) {
    let server = try await NATSServer.start()
    return (server, try await connect(server, configure))
}

/// A connection to `server` with quick reconnects, forever.
private func connect(
    _ server: NATSServer, _ configure: (inout NATSConnection.Options) -> Void = { _ in }
) async throws -> NATSConnection {
    var options = NATSConnection.Options(servers: [server.url])
    options.name = "state-store-test"
    options.reconnect.wait = .milliseconds(50)
    options.reconnect.jitter = .milliseconds(10)
    configure(&options)
    return try await NATSConnection.connect(options, logger: LogCapture().logger())
}
