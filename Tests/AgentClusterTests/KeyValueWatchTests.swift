import AgentCluster
import AgentTestSupport
import Foundation
import Synchronization
import Testing

@Suite("Key-value watches against a real nats-server")
struct KeyValueWatchTests {
    /// The entries among `events`, by key and operation.
    private func puts(_ events: [KeyValueWatch.Event]) -> [String] {
        events.compactMap {
            guard case .entry(let entry) = $0, entry.operation == .put else { return nil }
            return "\(entry.key)=\(entry.value.text)"
        }
    }

    @Test("a watch gets the current values, then caught-up, then every put and delete")
    func seesUpdates() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "watched"))
        try await bucket.put("a", value: Array(text: "1"))
        try await bucket.put("b", value: Array(text: "2"))
        let events = Received<KeyValueWatch.Event>()
        let watch = try await bucket.watch { events.append($0) }

        #expect(await events.wait { $0 == .caughtUp } != nil)
        #expect(Set(puts(events.all)) == ["a=1", "b=2"])

        try await bucket.put("a", value: Array(text: "3"))
        try await bucket.delete("b")
        _ = try await bucket.create("c", value: Array(text: "4"))
        let deleted = await events.wait {
            if case .entry(let entry) = $0 { return entry.key == "b" && entry.operation == .delete }
            return false
        }
        #expect(deleted != nil)
        #expect(await events.wait { if case .entry(let entry) = $0 { entry.key == "c" } else { false } } != nil)
        #expect(puts(events.all).suffix(2) == ["a=3", "c=4"])

        watch.stop()
        await watch.finished()
        let count = events.all.count
        try await bucket.put("a", value: Array(text: "after stop"))
        try await connection.flush()
        #expect(events.all.count == count)
        await connection.close()
    }

    @Test("a watch of one key pattern sees only matching keys")
    func pattern() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "patterns"))
        let events = Received<KeyValueWatch.Event>()
        let watch = try await bucket.watch("host-a.*") { events.append($0) }
        #expect(await events.wait { $0 == .caughtUp } != nil)
        try await bucket.put("host-b.sub1", value: Array(text: "x"))
        try await bucket.put("host-a.sub1", value: Array(text: "y"))
        #expect(await events.wait(count: 2) != nil)
        #expect(puts(events.all) == ["host-a.sub1=y"])
        watch.stop()
        await watch.finished()
        await connection.close()
    }

    @Test("after the server restarts and loses the watch's consumer, the watch resynchronises from the current values at once")
    func survivesRestart() async throws {
        let server = try await NATSServer.start()
        let port = server.port
        let log = LogCapture()
        let connection = try await connect(server, log: log)
        let bucket = try await connection.createOrBindBucket(.init(name: "survivor", history: 3))
        try await bucket.put("stays", value: Array(text: "1"))
        try await bucket.put("changes", value: Array(text: "1"))
        try await bucket.put("goes", value: Array(text: "1"))
        let events = Received<KeyValueWatch.Event>()
        let watch = try await bucket.watch { events.append($0) }
        #expect(await events.wait { $0 == .caughtUp } != nil)
        let beforeRestart = events.all.count
        let connectionEvents = collectEvents(of: connection)

        server.kill()
        #expect(await connectionEvents.wait(until: \.isDisconnected) != nil)
        // The server comes back on a port this connection does not know, so that what follows
        // happens while it is away: the server loses the watch's consumer (as it drops an
        // ephemeral consumer whose client stays away past its inactivity threshold, or as
        // another server of a cluster never had it), and keys change.
        try await server.restart(port: -1)
        let writer = try await connect(server)
        // (A file-store server drops ephemeral consumers when it restarts; delete any it kept.)
        #expect(await poll { (try? await deleteConsumers(ofStream: "KV_survivor", through: writer)) != nil })
        let writerBucket = try await writer.bindBucket(named: "survivor")
        try await writerBucket.put("changes", value: Array(text: "2"))
        try await writerBucket.purge("goes")
        await writer.close()
        try await server.restart(port: port)
        #expect(await connectionEvents.wait(until: \.isReconnected) != nil)

        // Resynchronised: a second caught-up, the change, the purge; "stays" not repeated. Soon
        // (nats.c's own ordered-consumer reset, where it happens at all, waits for missed
        // heartbeats: 10 s and more).
        let resynchronised = await events.items.wait(timeout: .seconds(5)) { $0.dropFirst(beforeRestart).contains(.caughtUp) }
        #expect(resynchronised != nil)
        #expect(await events.wait(timeout: .seconds(5)) {
            if case .entry(let e) = $0 { e.key == "changes" && e.value.text == "2" } else { false }
        } != nil)
        #expect(await events.wait(timeout: .seconds(5)) {
            if case .entry(let e) = $0 { e.key == "goes" && e.operation == .purge } else { false }
        } != nil)
        #expect(!puts(Array(events.all.dropFirst(beforeRestart))).contains("stays=1"))
        #expect(await log.first { $0.message.contains("resynchronised") } != nil)

        // And it goes on following new writes.
        try await bucket.put("new", value: Array(text: "n"))
        #expect(await events.wait(timeout: .seconds(5)) { if case .entry(let e) = $0 { e.key == "new" } else { false } } != nil)

        watch.stop()
        await watch.finished()
        await connection.close()
    }

    @Test("a key that vanished while disconnected, marker and all, is reported as vanished")
    func vanishedWhileDisconnected() async throws {
        let server = try await NATSServer.start()
        let port = server.port
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "vanishing"))
        try await bucket.put("short-lived", value: Array(text: "1"))
        try await bucket.put("stays", value: Array(text: "1"))
        let events = Received<KeyValueWatch.Event>()
        let watch = try await bucket.watch { events.append($0) }
        #expect(await events.wait { $0 == .caughtUp } != nil)
        let connectionEvents = collectEvents(of: connection)

        // While this connection is away (the server back on a port it does not know), another
        // removes the key and its history entirely; then the server returns where it looks.
        server.kill()
        #expect(await connectionEvents.wait(until: \.isDisconnected) != nil)
        try await server.restart(port: -1)
        let other = try await connect(server)
        let otherBucket = try await other.bindBucket(named: "vanishing")
        #expect(await poll { (try? await otherBucket.purge("short-lived")) != nil })
        try await otherBucket.removeDeleteMarkers(olderThan: nil)
        await other.close()
        try await server.restart(port: port)
        #expect(await connectionEvents.wait(until: \.isReconnected) != nil)

        let gone = await events.wait {
            if case .entry(let entry) = $0 { return entry.key == "short-lived" && entry.operation != .put }
            return false
        }
        guard case .entry(let entry) = try #require(gone) else { return }
        #expect(entry.operation == .vanished)
        #expect(entry.revision == 0)
        #expect(!events.all.contains { if case .entry(let e) = $0 { e.key == "stays" && e.operation != .put } else { false } })
        watch.stop()
        await watch.finished()
        await connection.close()
    }

    @Test("stopping a watch from its own handler, and closing the connection under a watch, end it cleanly")
    func stopsCleanly() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "stopping"))
        let holder = WatchHolder()
        let events = Received<KeyValueWatch.Event>()
        let selfStopping = try await bucket.watch { event in
            events.append(event)
            if case .entry(let entry) = event, entry.key == "stop" { holder.watch.withLock { $0 }?.stop() }
        }
        holder.watch.withLock { $0 = selfStopping }
        try await bucket.put("stop", value: [])
        await selfStopping.finished()
        holder.watch.withLock { $0 = nil }  // (the handler holds the holder: no cycle left behind)

        let other = Received<KeyValueWatch.Event>()
        let open = try await bucket.watch { other.append($0) }
        #expect(await other.wait { $0 == .caughtUp } != nil)
        await connection.close()
        await open.finished()
        open.stop()  // after the close: nothing to do
        let error = await #expect(throws: NATSError.self) { _ = try await bucket.watch { _ in } }
        #expect(error?.code == .connectionClosed)
    }
}

/// Lets a handler reach the watch it belongs to.
private final class WatchHolder: Sendable {
    let watch = Mutex<KeyValueWatch?>(nil)
}

/// Deletes every consumer of `stream` through the JetStream API (what a server does to an
/// ephemeral consumer whose client is away past its inactivity threshold).
/// - Returns: how many there were.
private func deleteConsumers(ofStream stream: String, through connection: NATSConnection) async throws -> Int {
    let answer = try await connection.request("$JS.API.CONSUMER.NAMES.\(stream)", payload: Array(text: "{}"), timeout: .seconds(5))
    let object = try JSONSerialization.jsonObject(with: Data(answer.payload)) as? [String: Any]
    let names = object?["consumers"] as? [String] ?? []
    for name in names {
        _ = try await connection.request("$JS.API.CONSUMER.DELETE.\(stream).\(name)", payload: [], timeout: .seconds(5))
    }
    return names.count
}
