import AgentCore
@testable import AgentRuntime
import AgentTestSupport
import Foundation
import Logging
import Testing

@Suite("agentd's status request: a runtime's plugins and resident agents, through its host")
struct RuntimeStatusTests {
    /// The runtime's answer to a status request sent through its host, parsed.
    static func status(of runtime: AgentRuntime, timeout: Duration = .seconds(5)) async throws -> [String: Any] {
        let client = try StateClient(address: runtime.hostAddress!)
        let text: String
        do {
            text = try await client.runtimeStatus(ofClient: runtime.configuration.clientID, timeout: timeout)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any], "not a JSON object: \(text)")
    }

    static func agents(_ status: [String: Any]) throws -> [String: [String: Any]] {
        let entries = try #require(status["agents"] as? [[String: Any]])
        return Dictionary(uniqueKeysWithValues: entries.map { ($0["agent_type"] as? String ?? "?", $0) })
    }

    @Test("plugins with version, content hash and agent types; resident agents per type; a shared type's keys and workers")
    func pluginsAndAgents() async throws {
        try await withRuntime(
            plugins: [("counter.so", "CounterAgent"), ("echo.so", "EchoAgent")],
            settings: ["counter-plugin": ["shared": "true"]]
        ) { harness in
            for key in ["b", "a"] { _ = try await harness.call("counter/\(key)", "Add", #"{"amount": 1}"#) }
            _ = try await harness.call("echo/x", "Echo", #"{"text": "hi"}"#)
            let clientID = harness.runtime.configuration.clientID

            // The workers of a shared type are what the host last said: wait until it has.
            #expect(await poll {
                let status = try? await Self.status(of: harness.runtime)
                let counter = status.flatMap { try? Self.agents($0)["counter"] }
                return (counter?["workers"] as? [String]) == [clientID]
            })
            let status = try await Self.status(of: harness.runtime)
            #expect(status["client_id"] as? String == clientID)
            #expect(status["host"] as? String == harness.runtime.hostAddress)
            #expect(status["resident"] as? Int == 3)

            let plugins = try #require(status["plugins"] as? [[String: Any]])
            #expect(plugins.map { $0["name"] as? String } == ["counter-plugin", "echo-plugin"])
            for (listed, loaded) in zip(plugins, harness.runtime.plugins) {
                #expect(listed["version"] as? String == loaded.version)
                #expect(listed["content_hash"] as? String == loaded.contentHash)
                #expect(listed["path"] as? String == loaded.path)
            }
            let counterTypes = try #require(plugins[0]["agent_types"] as? [[String: Any]])
            #expect(counterTypes.map { $0["name"] as? String } == ["counter"])
            #expect(counterTypes.map { $0["shared"] as? Bool } == [true])
            let echoTypes = try #require(plugins[1]["agent_types"] as? [[String: Any]])
            #expect(echoTypes.map { $0["shared"] as? Bool } == [false])

            let agents = try Self.agents(status)
            let counter = try #require(agents["counter"])
            #expect(counter["shared"] as? Bool == true)
            #expect(counter["resident"] as? Int == 2)
            #expect(counter["keys"] as? [String] == ["a", "b"])
            #expect(counter["keys_truncated"] as? Bool == false)
            let echo = try #require(agents["echo"])
            #expect(echo["shared"] as? Bool == false)
            #expect(echo["resident"] as? Int == 1)
            #expect(echo["keys"] == nil, "the keys of a type that is not shared are not listed")
            let statistics = try #require(status["statistics"] as? [String: Any])
            #expect(Set(statistics.keys) == ["activations", "deactivations", "commits", "checkpoints", "checkpoint_failures"])
        }
    }

    @Test("the host's status shows the runtime as a worker with a control channel and its shared type")
    func hostSide() async throws {
        try await withRuntime(
            plugins: [("counter.so", "CounterAgent")], settings: ["counter-plugin": ["shared": "true"]]
        ) { harness in
            // (The harness's client connects with its first call.)
            _ = try await harness.call("counter/a", "Add", #"{"amount": 1}"#)
            let host = try #require(harness.runtime.embeddedHost)
            let workers = try #require(host.status()["workers"].flatMap { value -> [JSONValue]? in
                if case .array(let elements) = value { elements } else { nil }
            })
            let runtime = try #require(workers.first { $0["client_id"] == .string(harness.runtime.configuration.clientID) })
            #expect(runtime["control_channel"] == true)
            #expect(runtime["shared_agent_types"] == .array(["counter"]))
            // The harness's own client is a worker too, without a control channel.
            let client = try #require(workers.first { $0["client_id"] == .string(harness.client.clientID) })
            #expect(client["control_channel"] == false)
        }
    }

    @Test("a worker that is no runtime does not answer: the request times out")
    func notARuntime() async throws {
        try await withRuntime(plugins: [("echo.so", "EchoAgent")]) { harness in
            let client = try StateClient(address: harness.runtime.hostAddress!)
            let error = await #expect(throws: StateClient.Failure.self) {
                _ = try await client.runtimeStatus(ofClient: harness.client.clientID, timeout: .milliseconds(300))
            }
            #expect(error?.code == .timedOut)
            await client.close()
        }
    }

    @Test("a status over the message size limit is answered with an error giving both sizes")
    func overLimit() async throws {
        let server = StatusRequestServer(
            status: { .object([("filler", .string(String(repeating: "x", count: 2_000)))]) }, maxMessageBytes: 1_000,
            logger: Logger(label: "test") { _ in SwiftLogNoOpLogHandler() })
        let request = ControlPlaneCodec.ControlMessage(
            rpcID: "r1", destination: "clientid=runtime", respondTo: "clientid=cli",
            rpcMessage: ControlPlaneCodec.encodeStatusMessage(.request))
        #expect(StatusRequestServer.serves(request))
        let answer = AsyncCondition<[UInt8]?>(nil)
        server.serve(request) { bytes in answer.mutate { $0 = bytes } }
        let bytes = try #require(await answer.wait { $0 != nil } ?? nil)
        let message = try bytes.withUnsafeBytes { try ControlPlaneCodec.decodeControlMessage($0) }
        #expect(message.rpcID == "r1")
        #expect(message.destination == "clientid=cli")
        let response = try message.rpcMessage.flatMap { try ControlPlaneCodec.decodeStatusMessage($0) }
        guard case .response(let json, let error) = response else {
            Issue.record("not a StatusResponse: \(String(describing: response))")
            return
        }
        #expect(json.isEmpty)
        #expect(error.contains("over the message size limit of 1000 bytes"), "\(error)")
    }
}
