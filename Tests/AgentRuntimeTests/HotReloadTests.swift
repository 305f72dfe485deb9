import AgentCore
import AgentRuntime
import AgentTestSupport
import Foundation
import Synchronization
import Testing

/// Drops a built plugin into a directory the way users should: written beside it under a
/// temporary name, then renamed in.
func dropIn(_ product: String, as name: String, in directory: String) throws {
    let temporary = "\(directory)/.\(name).tmp"
    try? FileManager.default.removeItem(atPath: temporary)
    try FileManager.default.copyItem(atPath: "\(RuntimeHarness.buildDirectory)/lib\(product).so", toPath: temporary)
    guard rename(temporary, "\(directory)/\(name)") == 0 else { throw POSIXError(.EIO) }
}

func dropIn(bytes: [UInt8], as name: String, in directory: String) throws {
    let temporary = "\(directory)/.\(name).tmp"
    try Data(bytes).write(to: URL(fileURLWithPath: temporary))
    guard rename(temporary, "\(directory)/\(name)") == 0 else { throw POSIXError(.EIO) }
}

extension RuntimeHarness {
    /// Waits for a log line with `message` whose plugin path ends with `file`, logged after
    /// the first `since` records.
    func waitForLog(_ message: String, file: String, since: Int, timeout: Duration = .seconds(10)) async -> LogCapture.Record? {
        await log.wait(since: since, timeout: timeout) {
            $0.message == message && ($0.metadata["plugin.path"]?.hasSuffix("/" + file) ?? false)
        }
    }

    func count(_ key: String) async throws -> (version: Int, count: Int) {
        let text = try await call("versioned/\(key)", "Get", "{}")
        let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        return (json["version"] as! Int, json["count"] as! Int)
    }
}

/// What the traffic of a reload test did.
final class TrafficCounters: Sendable {
    let sent = SharedCounts()
    let answered = SharedNumber()
    let failures = SharedList()
    let stop = SharedFlag()
}

final class SharedCounts: Sendable {
    private let value = Mutex([String: Int]())
    func withLock<R>(_ body: (inout [String: Int]) -> R) -> R { value.withLock { body(&$0) } }
}

final class SharedList: Sendable {
    private let value = Mutex([String]())
    func withLock<R>(_ body: (inout [String]) -> R) -> R { value.withLock { body(&$0) } }
}

final class SharedNumber: Sendable {
    private let value = Atomic<Int>(0)
    func add(_ n: Int, ordering: AtomicUpdateOrdering) { value.add(n, ordering: .relaxed) }
    func load(ordering: AtomicLoadOrdering) -> Int { value.load(ordering: .acquiring) }
}

final class SharedFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func store(_ flag: Bool, ordering: AtomicStoreOrdering) { value.store(flag, ordering: .releasing) }
    func load(ordering: AtomicLoadOrdering) -> Bool { value.load(ordering: .acquiring) }
}

@Suite("Hot reload: add, replace and remove plugins while the runtime serves")
struct HotReloadTests {
    @Test("a plugin dropped into the directory is loaded and serves, with no restart")
    func add() async throws {
        try await withRuntime(plugins: [("echo.so", "EchoAgent")]) { harness in
            let mark = harness.log.count
            try dropIn("VersionedPluginV1", as: "versioned.so", in: harness.pluginDirectory)
            let loaded = await harness.waitForLog("plugin loaded", file: "versioned.so", since: mark)
            #expect(loaded?.metadata["plugin.version"] == "1.0.0")
            #expect(try await harness.count("a").version == 1)
            // The host connection stayed up: the echo agent still answers.
            #expect(try await harness.call("echo/x", "Echo", #"{"text": "up"}"#) == #"{"text": "up"}"#)
        }
    }

    @Test("replacing a plugin many times under continuous traffic loses, duplicates and leaves unanswered nothing; state moves along")
    func replaceUnderTraffic() async throws {
        // The publisher runs flat out: mailboxes may hold far more than the default bound here
        // (the bound itself is tested in BoundedQueueTests).
        try await withRuntime(plugins: [("versioned.so", "VersionedPluginV1")], mailboxLimit: 10_000_000) { harness in
            let keys = ["k0", "k1", "k2", "k3"]
            let counters = TrafficCounters()
            let sent = counters.sent, answered = counters.answered, failures = counters.failures, stop = counters.stop
            let client = harness.client
            // Publishers and callers run until the swaps are done.
            let traffic = Task {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        var round = 0
                        while !stop.load(ordering: .relaxed) {
                            let key = keys[round % keys.count]
                            do {
                                // As fast as the runtime takes them: waits while the client's
                                // bounded outbound queue is full.
                                try await client.publish(Array("{}".utf8), messageType: "Tick",
                                                         to: TopicID(type: "versioned-events", source: key),
                                                         waitingUpTo: .seconds(10))
                                sent.withLock { $0[key, default: 0] += 1 }
                            } catch {
                                failures.withLock { $0.append("publish: \(error)") }
                            }
                            round += 1
                            if round % 50 == 0 { await Task.yield() }
                        }
                    }
                    for caller in 0..<3 {
                        group.addTask {
                            var round = 0
                            while !stop.load(ordering: .relaxed) {
                                let key = keys[(round + caller) % keys.count]
                                let type = round % 4 == 0 ? "Slow" : "Get"
                                do {
                                    _ = try await client.send(Array("{}".utf8), messageType: type, to: AgentID(type: "versioned", key: key), timeout: .seconds(20))
                                    answered.add(1, ordering: .relaxed)
                                } catch {
                                    failures.withLock { $0.append("\(type) to \(key): \(error)") }
                                }
                                round += 1
                            }
                        }
                    }
                }
            }
            var version = 1
            for _ in 0..<11 {
                version = version == 1 ? 2 : 1
                let mark = harness.log.count
                try dropIn(version == 1 ? "VersionedPluginV1" : "VersionedPluginV2", as: "versioned.so", in: harness.pluginDirectory)
                let replaced = await harness.waitForLog("plugin replaced", file: "versioned.so", since: mark)
                #expect(replaced?.metadata["plugin.version"] == "\(version).0.0")
            }
            stop.store(true, ordering: .relaxed)
            await traffic.value
            #expect(failures.withLock { $0 } == [])
            #expect(harness.log.records { $0.message == "mailbox full: message refused" }.isEmpty)
            #expect(answered.load(ordering: .relaxed) > 0)
            // Every event counted exactly once, across 11 swaps (the count moved with each agent).
            let expected = sent.withLock { $0 }
            for key in keys {
                let (answeredVersion, count) = try await harness.count(key)
                #expect(answeredVersion == version)
                #expect(count == expected[key, default: 0], "agent versioned/\(key)")
            }
            // The last version is 2, which adds the agent type `versioned-extra`.
            #expect(version == 2)
            #expect(try await harness.call("versioned-extra/x", "Get", "{}").contains(#""version": 2"#))
            // Retired versions were unloaded once idle (they are C plugins).
            let retired = harness.log.records { $0.message == "plugin version retired" }
            #expect(retired.count >= 9)
            #expect(retired.allSatisfy { $0.metadata["unmapped"] == "true" })
        }
    }

    @Test("a broken new version is refused with one log line, and the old version keeps serving")
    func brokenReplacement() async throws {
        try await withRuntime(plugins: [("versioned.so", "VersionedPluginV1")]) { harness in
            try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "versioned-events", source: "a"))
            #expect(try await harness.count("a") == (1, 1))
            let broken: [(String, [UInt8]?)] = [
                ("not an ELF file", Array("garbage".utf8)),
                ("half-written", Array(try Data(contentsOf: URL(fileURLWithPath: "\(RuntimeHarness.buildDirectory)/libVersionedPluginV2.so")).prefix(3000))),
                ("another ABI major", nil),
            ]
            for (what, bytes) in broken {
                let mark = harness.log.count
                if let bytes {
                    try dropIn(bytes: bytes, as: "versioned.so", in: harness.pluginDirectory)
                } else {
                    try dropIn("BadMajorPlugin", as: "versioned.so", in: harness.pluginDirectory)
                }
                let refused = await harness.waitForLog("new plugin version refused; the old version keeps serving", file: "versioned.so", since: mark)
                #expect(refused != nil, "\(what)")
                #expect(refused?.metadata["serving.version"] == "1.0.0", "\(what)")
                #expect(try await harness.count("a") == (1, 1), "\(what): the old version still serves, with its state")
            }
            let mark = harness.log.count
            try dropIn("VersionedPluginV2", as: "versioned.so", in: harness.pluginDirectory)
            _ = await harness.waitForLog("plugin replaced", file: "versioned.so", since: mark)
            #expect(try await harness.count("a") == (2, 1))
        }
    }

    @Test("rewriting a plugin with the same content changes nothing")
    func sameContent() async throws {
        try await withRuntime(plugins: [("versioned.so", "VersionedPluginV1")]) { harness in
            try harness.client.publish(Array("{}".utf8), messageType: "Tick", to: TopicID(type: "versioned-events", source: "a"))
            #expect(try await harness.count("a") == (1, 1))
            let mark = harness.log.count
            try dropIn("VersionedPluginV1", as: "versioned.so", in: harness.pluginDirectory)
            // A later change is picked up by a later rescan; rescans run in order, so had the
            // rewrite swapped anything, its log line would come first.
            try dropIn("EchoAgent", as: "zz-echo.so", in: harness.pluginDirectory)
            _ = await harness.waitForLog("plugin loaded", file: "zz-echo.so", since: mark)
            #expect(harness.log.all.dropFirst(mark).filter { $0.message.hasPrefix("plugin replaced") || $0.message == "plugin refused" }.isEmpty)
            #expect(try await harness.count("a") == (1, 1))
        }
    }

    @Test("removing a plugin answers what is in flight, refuses what comes after, and withdraws its subscriptions")
    func remove() async throws {
        try await withRuntime(plugins: [("echo.so", "EchoAgent"), ("versioned.so", "VersionedPluginV1")]) { harness in
            #expect(try await harness.client.subscriptions().contains { $0.agentType == "versioned" })
            let client = harness.client
            let inFlight = (0..<8).map { index in
                Task { () -> Result<WorkerClient.Response, any Error> in
                    do {
                        return .success(try await client.send(Array("{}".utf8), messageType: "Slow", to: AgentID(type: "versioned", key: "k\(index % 2)"), timeout: .seconds(20)))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            let mark = harness.log.count
            try FileManager.default.removeItem(atPath: "\(harness.pluginDirectory)/versioned.so")
            _ = await harness.waitForLog("plugin removed", file: "versioned.so", since: mark)
            // Every call in flight got an answer: its reply, or an error saying the type went.
            for task in inFlight {
                if case .failure(let error) = await task.value {
                    #expect("\(error)".contains("no longer served"), "\(error)")
                }
            }
            let after = await #expect(throws: RuntimeError.self) { _ = try await harness.call("versioned/k0", "Get", "{}") }
            #expect(after?.message.contains("no longer served") == true)
            #expect(try await harness.client.subscriptions().contains { $0.agentType == "versioned" } == false)
            let retired = await harness.log.wait(since: mark) { $0.message == "plugin version retired" && $0.metadata["plugin"] == "versioned" }
            #expect(retired?.metadata["unmapped"] == "true")
            // The rest keeps serving.
            #expect(try await harness.call("echo/x", "Echo", #"{"text": "fine"}"#) == #"{"text": "fine"}"#)
        }
    }

    @Test("a Swift plugin is replaced under traffic and stays mapped; the retired count is bounded")
    func swiftReplacement() async throws {
        try await withRuntime(plugins: [("greeter.so", "GreeterAgent")], maxRetiredSwiftImages: 2) { harness in
            let original = try Data(contentsOf: URL(fileURLWithPath: "\(RuntimeHarness.buildDirectory)/libGreeterAgent.so"))
            for round in 1...3 {
                // A new version: the same image with bytes appended (an ELF file ignores them).
                let mark = harness.log.count
                try dropIn(bytes: Array(original) + Array("version \(round)".utf8), as: "greeter.so", in: harness.pluginDirectory)
                if round <= 2 {
                    let replaced = await harness.waitForLog("plugin replaced", file: "greeter.so", since: mark)
                    #expect(replaced != nil)
                } else {
                    let refused = await harness.waitForLog("new plugin version refused; the old version keeps serving", file: "greeter.so", since: mark)
                    #expect(refused?.metadata["reason"]?.contains("limit is 2") == true)
                }
                let reply = try await harness.call("greeter/s", "Greeting", #"{"name": "Ada"}"#)
                #expect(reply.contains("Ada"))
            }
            let retired = harness.log.records { $0.message == "plugin version retired" }
            #expect(retired.allSatisfy { $0.metadata["unmapped"] == "false" })
        }
    }
}
