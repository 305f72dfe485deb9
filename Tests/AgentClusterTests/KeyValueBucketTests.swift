import AgentCluster
import AgentTestSupport
import Testing

@Suite("JetStream key-value buckets against a real nats-server")
struct KeyValueBucketTests {
    @Test("put, get, create only if absent, update only at a revision, delete, purge, keys")
    func operations() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "claims", history: 5))

        #expect(try await bucket.get("echo") == nil)
        let claimed = try await bucket.create("echo", value: Array(text: "host-a"))
        let entry = try #require(try await bucket.get("echo"))
        #expect(entry.value.text == "host-a")
        #expect(entry.revision == claimed)
        #expect(entry.operation == .put)

        // A second claim of the same key is refused, and says who holds it at which revision.
        let conflict = await #expect(throws: NATSError.self) {
            try await bucket.create("echo", value: Array(text: "host-b"))
        }
        #expect(conflict?.code == .keyExists)
        #expect(conflict?.currentRevision == claimed)
        #expect(conflict?.bucket == "claims")
        #expect(conflict?.key == "echo")
        #expect(conflict?.description == "create echo in bucket claims on \(server.url): the key has a value already, at revision \(claimed)")
        #expect(try await bucket.get("echo")?.value.text == "host-a")

        // Renewal at the revision read succeeds; a stale writer is fenced off.
        let renewed = try await bucket.update("echo", value: Array(text: "host-a renewed"), ifRevision: claimed)
        #expect(renewed > claimed)
        let fenced = await #expect(throws: NATSError.self) {
            try await bucket.update("echo", value: Array(text: "stale"), ifRevision: claimed)
        }
        #expect(fenced?.code == .wrongRevision)
        #expect(fenced?.currentRevision == renewed)
        #expect(try await bucket.get("echo")?.value.text == "host-a renewed")

        // put overwrites whatever is there.
        let put = try await bucket.put("greeter", value: Array(text: "host-c"))
        #expect(try await bucket.get("greeter")?.revision == put)
        #expect(Set(try await bucket.keys()) == ["echo", "greeter"])

        // Delete: the key has no value, and can be claimed again.
        try await bucket.delete("echo")
        #expect(try await bucket.get("echo") == nil)
        #expect(try await bucket.keys() == ["greeter"])
        let reclaimed = try await bucket.create("echo", value: Array(text: "host-b"))
        #expect(try await bucket.get("echo")?.revision == reclaimed)

        // Purge: gone too.
        try await bucket.purge("greeter")
        #expect(try await bucket.get("greeter") == nil)
        #expect(try await bucket.keys() == ["echo"])

        // Markers: kept while younger than asked, removed on request; live keys untouched.
        let before = try await bucket.status().values
        try await bucket.removeDeleteMarkers(olderThan: .seconds(600))
        #expect(try await bucket.status().values == before)
        try await bucket.removeDeleteMarkers()
        #expect(try await bucket.status().values == before - 1)  // greeter's purge marker
        #expect(try await bucket.get("echo")?.revision == reclaimed)

        let status = try await bucket.status()
        #expect(status.history == 5)
        #expect(status.ttl == nil)
        await connection.close()
    }

    @Test("delete only at a revision: a claim another host took over is left alone")
    func fencedDelete() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "leases"))
        let mine = try await bucket.create("echo", value: Array(text: "host-a"))
        let theirs = try await bucket.update("echo", value: Array(text: "host-b"), ifRevision: mine)

        let refused = await #expect(throws: NATSError.self) { try await bucket.delete("echo", ifRevision: mine) }
        #expect(refused?.code == .wrongRevision)
        #expect(refused?.currentRevision == theirs)
        #expect(try await bucket.get("echo")?.value.text == "host-b")

        try await bucket.delete("echo", ifRevision: theirs)
        #expect(try await bucket.get("echo") == nil)
        _ = try await bucket.create("echo", value: Array(text: "host-c"))  // free to claim again
        await connection.close()
    }

    @Test("create-or-bind: the same settings bind; other settings are an error that says which")
    func createOrBind() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let configuration = KeyValueBucket.Configuration(name: "agent-types", history: 1, ttl: .seconds(30))
        let first = try await connection.createOrBindBucket(configuration)
        try await first.put("k", value: Array(text: "v"))
        let again = try await connection.createOrBindBucket(configuration)
        #expect(try await again.get("k")?.value.text == "v")
        #expect(try await again.status().ttl == .seconds(30))

        var other = configuration
        other.ttl = .seconds(10)
        let mismatch = await #expect(throws: NATSError.self) { _ = try await connection.createOrBindBucket(other) }
        #expect(mismatch?.code == .bucketConfigurationMismatch)
        #expect(mismatch?.description.contains("agent-types") == true)
        #expect(mismatch?.description.contains("30") == true)

        let bound = try await connection.bindBucket(named: "agent-types")
        #expect(try await bound.get("k")?.value.text == "v")
        let missing = await #expect(throws: NATSError.self) { _ = try await connection.bindBucket(named: "no-such-bucket") }
        #expect(missing?.code == .bucketNotFound)

        try await connection.deleteBucket(named: "agent-types")
        await #expect(throws: NATSError.self) { _ = try await connection.bindBucket(named: "agent-types") }
        await connection.close()
    }

    @Test("a bad key or bucket name is refused, naming it")
    func invalidNames() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let badBucket = await #expect(throws: NATSError.self) {
            _ = try await connection.createOrBindBucket(.init(name: "no spaces"))
        }
        #expect(badBucket?.code == .invalidArgument)
        let bucket = try await connection.createOrBindBucket(.init(name: "names"))
        let badKey = await #expect(throws: NATSError.self) { try await bucket.put("a key", value: []) }
        #expect(badKey?.code == .invalidArgument)
        #expect(badKey?.key == "a key")
        await connection.close()
    }

    @Test("key-value calls after the connection closed fail, at once")
    func afterClose() async throws {
        let server = try await NATSServer.start()
        let connection = try await connect(server)
        let bucket = try await connection.createOrBindBucket(.init(name: "closing"))
        await connection.close()
        let error = await #expect(throws: NATSError.self) { _ = try await bucket.get("k") }
        #expect(error?.code == .connectionClosed)
    }
}
