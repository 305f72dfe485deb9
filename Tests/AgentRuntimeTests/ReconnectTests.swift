import AgentCore
import AgentHost
import AgentRuntime
import AgentTestSupport
import Foundation
import Logging
import Testing

@Suite("Surviving a host restart")
struct ReconnectTests {
    /// A runtime joined to a separate host that the test can kill and restart on its port.
    struct Setup {
        let runtime: AgentRuntime
        let log: LogCapture
        let directory: String
        let port: Int

        static func start(publishBufferLimit: Int = 10_000) async throws -> (Setup, AgentHost) {
            let hostLogger = Logger(label: "test.host")
            let host = try AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: hostLogger)
            let directory = NSTemporaryDirectory() + "agentd-reconnect-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            for (name, product) in [("test-agents.so", "TestAgentsPlugin"), ("versioned.so", "VersionedPluginV1")] {
                try FileManager.default.copyItem(
                    atPath: "\(RuntimeHarness.buildDirectory)/lib\(product).so", toPath: "\(directory)/\(name)")
            }
            let log = LogCapture()
            let runtime = try AgentRuntime(
                configuration: .init(
                    hostAddress: "127.0.0.1:\(host.port)", rpcTimeout: .seconds(10), workers: 2,
                    pluginDirectory: directory, watchPlugins: false, publishBufferLimit: publishBufferLimit,
                    reconnectInitialBackoff: .milliseconds(20), reconnectMaxBackoff: .milliseconds(200)),
                logger: log.logger())
            try await runtime.start()
            return (Setup(runtime: runtime, log: log, directory: directory, port: host.port), host)
        }

        func client() throws -> WorkerClient { try WorkerClient(address: "127.0.0.1:\(port)") }

        func stop() async {
            await runtime.shutdown()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    static func json(_ response: WorkerClient.Response) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(response.payload)) as! [String: Any]
    }

    @Test("after a host restart the runtime reconnects, registers again, and delivers every publish exactly once: those the host had not acknowledged sent again")
    func hostRestart() async throws {
        let (setup, firstHost) = try await Setup.start()
        let mark = setup.log.count
        let client = try setup.client()
        // The emitter publishes 150 events to its neighbour `counter/r1`, one every 4 ms,
        // while the host goes away and comes back.
        _ = try await client.send(Array(#"{"count": 150, "interval_ms": 4, "topic": "count", "source": "r1"}"#.utf8),
                                  messageType: "Emit", to: AgentID(type: "versioned", key: "e"))
        await client.close()
        let hostGone = ContinuousClock.now
        await firstHost.shutdown(gracePeriod: .zero)
        let lost = await setup.log.wait(since: mark) { $0.message == "the channel to the host closed" }
        #expect(lost != nil)
        // How long events could still go into the dying connection: from the shutdown to the
        // runtime's noticing (at most; it was logged before this wait returned).
        let unnoticed = ContinuousClock.now - hostGone
        // The host is back on the same address.
        let secondHost = try AgentHost(configuration: .init(listen: "127.0.0.1:\(setup.port)"), logger: Logger(label: "test.host2"))
        let back = await setup.log.wait(since: mark, timeout: .seconds(20)) { $0.message == "reconnected to the host" }
        #expect(back != nil)
        let again = try setup.client()
        // Wait for the emitter to finish (its publishes went out or into the buffer): the
        // plugin reports its progress only when asked.
        var stats: [String: Any] = [:]
        let done = try await poll {
            stats = try Self.json(try await again.send(Array("{}".utf8), messageType: "EmitStats", to: AgentID(type: "versioned", key: "e")))
            return stats["done"] as? Bool == true
        }
        #expect(done, "the emitter did not finish within 10 s: \(stats)")
        #expect(stats["refused"] as? Int == 0, "nothing refused: the buffer had room")
        // Every event arrived exactly once: those the first host had not acknowledged — written
        // into the dying connection, on their way runtime → host → runtime (the counter is the
        // emitter's neighbour), queued at the host — were sent again after the reconnection, and
        // those that had arrived already were dropped as duplicates by the receiving runtime.
        let count = try Self.json(try await again.send(Array("{}".utf8), messageType: "Get", to: AgentID(type: "counter", key: "r1")))
        #expect(count["count"] as? Int == 150, "counted \(count) of 150 (the runtime noticed the host was gone after \(unnoticed))")
        await again.close()
        await setup.stop()
        await secondHost.shutdown()
    }

    @Test("with the host gone, publishes past the bounded buffer are refused, counted and logged")
    func bufferFull() async throws {
        let (setup, host) = try await Setup.start(publishBufferLimit: 20)
        let mark = setup.log.count
        let client = try setup.client()
        // The emitter starts 4 s later, when the host is gone (the RPC that starts it needs the
        // host; under AddressSanitizer on a loaded machine 1.5 s was not always enough for the
        // shutdown and the runtime noticing it), and goes on for 3 s: a runtime that noticed
        // later still has 21 publishes to refuse one past its buffer.
        _ = try await client.send(Array(#"{"count": 300, "interval_ms": 10, "delay_ms": 4000, "topic": "count", "source": "b"}"#.utf8),
                                  messageType: "Emit", to: AgentID(type: "versioned", key: "e"))
        await client.close()
        await host.shutdown(gracePeriod: .zero)
        let closed = await setup.log.wait(since: mark, timeout: .seconds(20)) { $0.message == "the channel to the host closed" }
        #expect(closed != nil, "the runtime did not notice the host's end")
        let refused = await setup.log.wait(since: mark, timeout: .seconds(30)) { $0.message.hasPrefix("publish refused") }
        #expect(refused?.metadata["buffer.limit"] == "20", "\(String(describing: refused))")
        await setup.stop()
    }
}
