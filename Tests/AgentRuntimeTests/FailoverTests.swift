import AgentCluster
import AgentCore
import AgentHost
import AgentRuntime
import AgentTestSupport
import Foundation
import Logging
import Testing

/// A runtime given several hosts (`[runtime] host = A, B`) starts with the first that answers
/// and, when it loses its host, moves on to the next: it registers its agent types there, and
/// its agents serve callers of that host.
@Suite("Failing over to the next host")
struct FailoverTests {
    private func pluginDirectory() throws -> String {
        let directory = NSTemporaryDirectory() + "agentd-failover-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.copyItem(
            atPath: "\(RuntimeHarness.buildDirectory)/libVersionedPluginV1.so", toPath: "\(directory)/versioned.so")
        return directory
    }

    private func runtime(hosts: String, directory: String, log: LogCapture) throws -> AgentRuntime {
        try AgentRuntime(
            configuration: .init(
                hostAddress: hosts, rpcTimeout: .seconds(10), workers: 2, pluginDirectory: directory,
                watchPlugins: false, reconnectInitialBackoff: .milliseconds(20), reconnectMaxBackoff: .milliseconds(200)),
            logger: log.logger())
    }

    @Test("losing its host, the runtime serves through the next one within seconds")
    func failover() async throws {
        let a = try AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: Logger(label: "test.a"))
        let b = try AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: Logger(label: "test.b"))
        let directory = try pluginDirectory()
        let log = LogCapture()
        let runtime = try runtime(hosts: "127.0.0.1:\(a.port), 127.0.0.1:\(b.port)", directory: directory, log: log)
        try await runtime.start()
        #expect(runtime.hostAddress == "127.0.0.1:\(a.port)", "the first host that answers")
        let viaA = try WorkerClient(address: "127.0.0.1:\(a.port)")
        let first = try await viaA.send(Array(#"{"count": 3}"#.utf8), messageType: "Set", to: AgentID(type: "versioned", key: "f"))
        #expect(String(decoding: first.payload, as: UTF8.self).contains(#""count": 3"#))
        await viaA.close()

        let lost = ContinuousClock.now
        await a.shutdown(gracePeriod: .zero)
        let moved = await log.first(timeout: .seconds(10)) { $0.message == "reconnected to the host" }
        #expect(moved?.metadata["host.address"] == "127.0.0.1:\(b.port)")
        let took = ContinuousClock.now - lost
        #expect(took < .seconds(5), "failover took \(took)")
        // Callers of B reach the agent (its state moved with the runtime: same process).
        let viaB = try WorkerClient(address: "127.0.0.1:\(b.port)")
        let answer = try await viaB.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "versioned", key: "f"))
        #expect(String(decoding: answer.payload, as: UTF8.self).contains(#""count": 3"#))
        await viaB.close()
        await runtime.shutdown()
        await b.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test("a first host that is down at start-up is passed over for the next")
    func firstHostDown() async throws {
        // Port 1: nothing listens there (a port that was just free could be taken meanwhile by
        // another test's host in a parallel run).
        let deadAddress = "127.0.0.1:1"
        let b = try AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: Logger(label: "test.b"))
        let directory = try pluginDirectory()
        let log = LogCapture()
        let runtime = try runtime(hosts: "\(deadAddress),127.0.0.1:\(b.port)", directory: directory, log: log)
        try await runtime.start()
        #expect(runtime.hostAddress == "127.0.0.1:\(b.port)")
        #expect(log.records { $0.message == "host unreachable" && $0.metadata["host.address"] == deadAddress }.count == 1)
        let viaB = try WorkerClient(address: "127.0.0.1:\(b.port)")
        let answer = try await viaB.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "versioned", key: "g"))
        #expect(String(decoding: answer.payload, as: UTF8.self).contains(#""count": 0"#))
        await viaB.close()
        await runtime.shutdown()
        await b.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }

    @Test("in a cluster, callers on another host keep reaching the agent after its runtime moved hosts")
    func failoverInCluster() async throws {
        let nats = try await NATSServer.start()
        defer { nats.stop() }
        let a = try await clusterHost("a", nats: nats)
        let b = try await clusterHost("b", nats: nats)
        let c = try await clusterHost("c", nats: nats)
        let directory = try pluginDirectory()
        let log = LogCapture()
        let runtime = try runtime(hosts: "127.0.0.1:\(a.port), 127.0.0.1:\(b.port)", directory: directory, log: log)
        try await runtime.start()
        let viaC = try WorkerClient(address: "127.0.0.1:\(c.port)")
        // C learns of the type through the cluster, a moment after the runtime registered it.
        var first: WorkerClient.Response?
        let reached = await poll {
            first = try? await viaC.send(Array(#"{"count": 5}"#.utf8), messageType: "Set", to: AgentID(type: "versioned", key: "f"))
            return first != nil
        }
        #expect(reached, "a caller on host c never reached the agent served through host a")

        await a.shutdown(gracePeriod: .zero)
        let moved = await log.first(timeout: .seconds(10)) { $0.message == "reconnected to the host" }
        #expect(moved?.metadata["host.address"] == "127.0.0.1:\(b.port)")
        // The same client took its type over on b; c's callers follow it there.
        var answer: WorkerClient.Response?
        let followed = await poll {
            answer = try? await viaC.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "versioned", key: "f"))
            return answer != nil
        }
        #expect(followed)
        #expect(answer.map { String(decoding: $0.payload, as: UTF8.self) }?.contains(#""count": 5"#) == true)
        await viaC.close()
        await runtime.shutdown()
        await b.shutdown()
        await c.shutdown()
        try? FileManager.default.removeItem(atPath: directory)
    }
}
