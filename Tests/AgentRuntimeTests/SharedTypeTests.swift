import AgentCluster
import AgentCore
import AgentHost
import AgentRuntime
import AgentTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// A shared agent type (`[plugin.counter-plugin] shared = true`) served by several runtimes
/// through one host, with one state store: each key on one runtime, keys moving as runtimes come
/// and go, state following them.
@Suite("Shared agent types: keys spread over runtimes, state following each key")
struct SharedTypeTests {
    private final class Cluster: Sendable {
        let host: AgentHost
        let directory: String
        let runtimes = Mutex<[String: AgentRuntime]>([:])

        init(host: AgentHost, directory: String) {
            self.host = host
            self.directory = directory
        }

        func start(_ name: String, on host: AgentHost? = nil, stateNATS: NATSConnection.Options? = nil) async throws -> AgentRuntime {
            var configuration = AgentRuntime.Configuration(
                hostAddress: "127.0.0.1:\((host ?? self.host).port)", clientID: name, rpcTimeout: .seconds(10), workers: 2,
                pluginDirectory: "\(directory)/plugins", watchPlugins: false,
                reconnectInitialBackoff: .milliseconds(20), reconnectMaxBackoff: .milliseconds(200),
                pluginSettings: ["counter-plugin": ["shared": "true"]],
                stateStorePath: "\(directory)/agents.db")
            configuration.stateNATS = stateNATS
            let runtime = try AgentRuntime(configuration: configuration, logger: Logger(label: "test.\(name)"))
            try await runtime.start()
            runtimes.withLock { $0[name] = runtime }
            return runtime
        }

        func stop(_ name: String) async {
            guard let runtime = runtimes.withLock({ $0.removeValue(forKey: name) }) else { return }
            await runtime.shutdown()
        }
    }

    private func withCluster(host given: AgentHost? = nil, _ body: (Cluster) async throws -> Void) async throws {
        let directory = NSTemporaryDirectory() + "agentd-shared-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(directory)/plugins", withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: "\(RuntimeHarness.buildDirectory)/libCounterAgent.so", toPath: "\(directory)/plugins/counter.so")
        let host = try given ?? AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: Logger(label: "test.host"))
        let cluster = Cluster(host: host, directory: directory)
        do {
            try await body(cluster)
        } catch {
            for name in cluster.runtimes.withLock({ Array($0.keys) }) { await cluster.stop(name) }
            await host.shutdown()
            throw error
        }
        for name in cluster.runtimes.withLock({ Array($0.keys) }) { await cluster.stop(name) }
        await host.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func add(_ client: WorkerClient, key: String) async -> Bool {
        (try? await client.send(Array(#"{"amount": 1}"#.utf8), messageType: "Add", to: AgentID(type: "counter", key: key),
                                timeout: .seconds(10))) != nil
    }

    private func count(_ client: WorkerClient, key: String) async throws -> Int {
        let answer = try await client.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "counter", key: key))
        let text = String(decoding: answer.payload, as: UTF8.self)
        let digits = text.drop { !$0.isNumber && $0 != "-" }.prefix { $0.isNumber || $0 == "-" }
        return Int(digits) ?? -1
    }

    /// No key resident on two runtimes at once.
    private func expectOneResidentPerKey(_ cluster: Cluster) {
        var seen: [AgentID: String] = [:]
        for (name, runtime) in cluster.runtimes.withLock({ $0 }) {
            for id in runtime.residentAgents where id.type == "counter" {
                #expect(seen[id] == nil, "\(id) resident on \(seen[id] ?? "") and \(name)")
                seen[id] = name
            }
        }
    }

    @Test("keys spread over the runtimes; one joining and one leaving under load move keys with their state, every answered Add counted once")
    func spreadAndMove() async throws {
        try await withCluster { try await spreadAndMove($0) }
    }

    private func spreadAndMove(_ cluster: Cluster) async throws {
        let first = try await cluster.start("runtime-1")
        let second = try await cluster.start("runtime-2")
        let client = try WorkerClient(address: "127.0.0.1:\(cluster.host.port)")
        let keys = (0..<300).map { "k\($0)" }
        var answered: [String: Int] = [:]
        // (start() returns once the host has the runtime's registrations: keys are placed over both.)
        for key in keys {
            if await add(client, key: key) { answered[key, default: 0] += 1 }
        }
        let spread = [first.sharedKeys["counter"] ?? 0, second.sharedKeys["counter"] ?? 0]
        #expect(spread.reduce(0, +) == keys.count)
        #expect(spread.allSatisfy { $0 <= keys.count }, "\(spread)")
        #expect(spread.allSatisfy { $0 >= keys.count / 4 }, "one runtime holds less than half its fair share: \(spread)")
        expectOneResidentPerKey(cluster)

        // A third joins, then the first leaves, while Adds keep coming: at least four rounds
        // over the keys, and until the first has left and one whole round more (keys move with
        // traffic: on a loaded machine four rounds may be over before the third serves).
        let firstLeft = AsyncCondition(false)
        let load = Task { [keys] in
            var counts: [String: Int] = [:]
            var rounds = 0
            var roundAfterLeaving = false
            repeat {
                roundAfterLeaving = firstLeft.value
                for key in keys.shuffled() {
                    if await self.add(client, key: key) { counts[key, default: 0] += 1 }
                }
                rounds += 1
            } while !(roundAfterLeaving && rounds >= 4)
            return counts
        }
        let third = try await cluster.start("runtime-3")
        let thirdServes = await poll { (third.sharedKeys["counter"] ?? 0) > 0 }
        #expect(thirdServes, "no key moved to the third runtime")
        await cluster.stop("runtime-1")
        firstLeft.mutate { $0 = true }
        for (key, count) in await load.value { answered[key, default: 0] += count }
        let remaining = [second.sharedKeys["counter"] ?? 0, third.sharedKeys["counter"] ?? 0]
        #expect(remaining.allSatisfy { $0 > keys.count / 4 }, "\(remaining)")
        // Every answered Add is in its key's count, and nothing else.
        var wrong: [String] = []
        for key in keys {
            let stored = try await count(client, key: key)
            if stored != answered[key, default: 0] { wrong.append("\(key): \(stored) stored, \(answered[key, default: 0]) answered") }
        }
        #expect(wrong.isEmpty, "\(wrong.prefix(10))")
        let settled = await poll { second.agentStatistics.resident + third.agentStatistics.resident <= keys.count }
        #expect(settled)
        expectOneResidentPerKey(cluster)
        await client.close()
    }

    @Test("in a cluster, runtimes of one shared type on two hosts, their state in NATS key-value, split its keys; callers on either host reach each key's one instance")
    func acrossHosts() async throws {
        let nats = try await NATSServer.start()
        defer { nats.stop() }
        let b = try await clusterHost("b", nats: nats)
        do {
            try await withCluster(host: clusterHost("a", nats: nats)) { cluster in
                // State in NATS JetStream key-value ([state] store = nats), as on two machines.
                let store = NATSConnection.Options(servers: [nats.url])
                let first = try await cluster.start("runtime-a", on: cluster.host, stateNATS: store)
                let second = try await cluster.start("runtime-b", on: b, stateNATS: store)
                // Both hosts know both workers once each has seen the other's in the cluster.
                let viaA = try WorkerClient(address: "127.0.0.1:\(cluster.host.port)")
                let viaB = try WorkerClient(address: "127.0.0.1:\(b.port)")
                let keys = (0..<200).map { "k\($0)" }
                let converged = await poll {
                    first.sharedTypeMembers["counter"]?.count == 2 && second.sharedTypeMembers["counter"]?.count == 2
                }
                #expect(converged, "the hosts never told both runtimes that two serve the type")
                var answered: [String: Int] = [:]
                for (index, key) in keys.enumerated() {
                    if await add(index.isMultiple(of: 2) ? viaA : viaB, key: key) { answered[key, default: 0] += 1 }
                    if await add(index.isMultiple(of: 2) ? viaB : viaA, key: key) { answered[key, default: 0] += 1 }
                }
                let spread = [first.sharedKeys["counter"] ?? 0, second.sharedKeys["counter"] ?? 0]
                #expect(spread.allSatisfy { $0 >= keys.count / 4 }, "\(spread)")
                expectOneResidentPerKey(cluster)
                var wrong: [String] = []
                for key in keys {
                    let stored = try await count(viaB, key: key)
                    if stored != answered[key, default: 0] { wrong.append("\(key): \(stored) stored, \(answered[key, default: 0]) answered") }
                }
                #expect(wrong.isEmpty, "\(wrong.prefix(10))")
                #expect(answered.values.reduce(0, +) >= keys.count * 2 - 4, "most Adds answered")
                // Host a's runtime leaves: its keys move to host b's, their state through NATS.
                await cluster.stop("runtime-a")
                let alone = await poll { second.sharedTypeMembers["counter"] == ["runtime-b"] }
                #expect(alone)
                var lost: [String] = []
                for key in keys {
                    let stored = try await count(viaA, key: key)
                    if stored != answered[key, default: 0] { lost.append("\(key): \(stored) stored, \(answered[key, default: 0]) answered") }
                }
                #expect(lost.isEmpty, "\(lost.prefix(10))")
                await viaA.close()
                await viaB.close()
            }
        } catch {
            await b.shutdown()
            throw error
        }
        await b.shutdown()
    }

    @Test("placement is rendezvous hashing: a member leaving moves only its own keys")
    func minimalMovement() {
        let keys = (0..<2000).map { "key-\($0)" }
        let three = ["a", "b", "c"]
        let before = Dictionary(uniqueKeysWithValues: keys.map { ($0, Placement.owner(type: "t", key: $0, among: three)!) })
        let counts = Dictionary(grouping: before.values, by: { $0 }).mapValues(\.count)
        for member in three { #expect(counts[member, default: 0] > 2000 / 3 / 2, "\(counts)") }
        let after = keys.map { ($0, Placement.owner(type: "t", key: $0, among: ["a", "c"])!) }
        for (key, owner) in after where before[key] != "b" {
            #expect(owner == before[key], "\(key) moved from \(before[key]!) though its owner stayed")
        }
    }
}
