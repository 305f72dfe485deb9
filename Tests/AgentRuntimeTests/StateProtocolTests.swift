@testable import AgentRuntime
import AgentCore
import AgentHost
import AgentTestSupport
import Foundation
import Logging
import Testing

/// The state protocol end to end: a ``StateClient`` (what `agentd state` uses) sends its
/// requests to a real host, which routes them over the control channel to a real runtime
/// serving the test plugins. Most tests have the runtime answer with an in-memory
/// ``AgentStateControl`` (``MemoryStateControl``: the control channel's behaviour, apart from
/// the agents'); `agentsAnswer` has the runtime's own agents answer.
@Suite("The state protocol through a host: save, load and delete reach the runtime and come back")
struct StateProtocolTests {
    /// A host on port 0 and a runtime joined to it, answering state requests with `agents`.
    struct Setup {
        let host: AgentHost
        let runtime: AgentRuntime
        let log: LogCapture
        let directory: String

        var address: String { "127.0.0.1:\(host.port)" }

        static func start(
            agents: (any AgentStateControl)? = MemoryStateControl(), handlerTimeout: Duration = .seconds(60)
        ) async throws -> Setup {
            let host = try AgentHost(configuration: .init(listen: "127.0.0.1:0"), logger: Logger(label: "test.host"))
            let directory = NSTemporaryDirectory() + "agentd-state-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                atPath: "\(RuntimeHarness.buildDirectory)/libTestAgentsPlugin.so", toPath: "\(directory)/test-agents.so")
            let log = LogCapture()
            let runtime = try AgentRuntime(
                configuration: .init(
                    hostAddress: "127.0.0.1:\(host.port)", workers: 2, pluginDirectory: directory, watchPlugins: false,
                    handlerTimeout: handlerTimeout, reconnectInitialBackoff: .milliseconds(20),
                    reconnectMaxBackoff: .milliseconds(200)),
                logger: log.logger(), stateRequestsAnsweredBy: agents)
            try await runtime.start()
            return Setup(host: host, runtime: runtime, log: log, directory: directory)
        }

        func client() throws -> StateClient { try StateClient(address: address) }

        func stop() async {
            await runtime.shutdown()
            await host.shutdown()
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    /// Runs `body` with a started setup and always stops it.
    static func withSetup(
        agents: (any AgentStateControl)? = MemoryStateControl(), handlerTimeout: Duration = .seconds(60),
        _ body: (Setup) async throws -> Void
    ) async throws {
        let setup = try await Setup.start(agents: agents, handlerTimeout: handlerTimeout)
        do {
            try await body(setup)
        } catch {
            await setup.stop()
            throw error
        }
        await setup.stop()
    }

    static let counter = AgentID(type: "counter", key: "a")

    /// The failure `body` throws (nil if it throws none).
    static func failure(_ body: () async throws(StateClient.Failure) -> Void) async -> StateClient.Failure? {
        do {
            try await body()
            return nil
        } catch {
            return error
        }
    }

    @Test("load then save gives back the state (JSON as it was, binary as a data URL); delete forgets it")
    func roundTrip() async throws {
        try await Self.withSetup { setup in
            #expect(setup.runtime.stateRequestsOverride != nil)
            let client = try setup.client()
            try await client.loadState(#"{"count": 3, "name": "Ада ✓"}"#, into: Self.counter)
            #expect(try await client.saveState(of: Self.counter) == #"{"count": 3, "name": "Ада ✓"}"#)

            let binary = "data:application/octet-stream;base64,AQUAAAAAAAAA"
            try await client.loadState(binary, into: Self.counter)
            #expect(try await client.saveState(of: Self.counter) == binary)

            try await client.deleteState(of: Self.counter)
            let gone = await Self.failure { () throws(StateClient.Failure) in _ = try await client.saveState(of: Self.counter) }
            #expect(gone?.code == .answeredWithError)
            #expect(gone?.message == "no state kept for counter/a")
            await client.close()
        }
    }

    @Test("an agent type nobody serves gets the host's error; one the runtime does not serve, the runtime's, naming the type")
    func unservedTypes() async throws {
        try await Self.withSetup { setup in
            let client = try setup.client()
            let nobody = await Self.failure { () throws(StateClient.Failure) in
                _ = try await client.saveState(of: AgentID(type: "nobody", key: "k"))
            }
            #expect(nobody?.code == .answeredWithError)
            #expect(nobody?.message == "no control channel serves destination 'agentid=nobody/k'")
            let deleteNobody = await Self.failure { () throws(StateClient.Failure) in
                try await client.deleteState(of: AgentID(type: "nobody", key: "k"))
            }
            #expect(deleteNobody?.message == "no control channel serves destination 'agentid=nobody/k'")
            // Delivered to the runtime (its type `counter`), asking for another type.
            let stranger = await Self.failure { () throws(StateClient.Failure) in
                _ = try await client.send(.saveStateRequest(agent: AgentID(type: "stranger", key: "k")), to: Self.counter)
            }
            #expect(stranger?.code == .answeredWithError)
            #expect(stranger?.message == "agent type 'stranger' is not served by this runtime (saving the state of stranger/k)")
            await client.close()
        }
    }

    @Test("a request whose agent never answers gets 'timed out' at the handler timeout; others are answered meanwhile")
    func agentNeverAnswers() async throws {
        // 6 s: the load and save below must be answered before it, on a loaded machine too.
        try await Self.withSetup(handlerTimeout: .seconds(6)) { setup in
            let client = try setup.client()
            let started = ContinuousClock.now
            let stuckDone = AsyncCondition(false)
            let stuck = Task {
                let failure = await Self.failure { () throws(StateClient.Failure) in
                    try await client.loadState("{}", into: AgentID(type: "counter", key: "stuck"))
                }
                stuckDone.mutate { $0 = true }
                return failure
            }
            try await client.loadState("[1]", into: Self.counter)
            #expect(try await client.saveState(of: Self.counter) == "[1]")
            #expect(!stuckDone.value, "answered only after the stuck request")
            let timedOut = await stuck.value
            let waited = ContinuousClock.now - started
            #expect(timedOut?.code == .answeredWithError)
            #expect(timedOut?.message == "loading the state of counter/stuck timed out after 6 s (the runtime's handler timeout); the request is withdrawn (one that had already begun may still complete)")
            #expect(waited >= .seconds(6), "\(waited)")
            await client.close()
        }
    }

    @Test("a client waits no longer than its own timeout, and says so")
    func clientTimeout() async throws {
        try await Self.withSetup { setup in
            let client = try setup.client()
            let failure = await Self.failure { () throws(StateClient.Failure) in
                _ = try await client.saveState(of: AgentID(type: "counter", key: "stuck"), timeout: .milliseconds(300))
            }
            #expect(failure?.code == .timedOut)
            #expect(failure?.message.hasPrefix("no answer from the host at \(setup.address) within 300 ms for saving the state of counter/stuck") == true)
            await client.close()
        }
    }

    @Test("fresh clients may ask at once: the host knows each one's channel before its answer comes back")
    func freshClientsAskAtOnce() async throws {
        try await Self.withSetup(agents: MemoryStateControl([Self.counter: Array(#"{"n": 1}"#.utf8)])) { setup in
            let states = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        // The request goes out the moment the channel is opened, with no wait.
                        let client = try StateClient(address: setup.address)
                        do {
                            let state = try await client.saveState(of: Self.counter, timeout: .seconds(10))
                            await client.close()
                            return state
                        } catch {
                            await client.close()
                            throw error
                        }
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(states == Array(repeating: #"{"n": 1}"#, count: 20))
        }
    }

    @Test("the runtime's own agents answer: a loaded state is the one the agent runs with, and delete starts it afresh")
    func agentsAnswer() async throws {
        try await Self.withSetup(agents: nil) { setup in
            let client = try setup.client()
            let worker = try WorkerClient(address: setup.address)
            let memo = AgentID(type: "memo", key: "k")
            // A fresh memo agent's state is `null`.
            #expect(try await client.saveState(of: memo) == "null")
            let document = #"{"notes": ["a", "b"], "name": "Ада ✓"}"#
            try await client.loadState(document, into: memo)
            #expect(try await client.saveState(of: memo) == document)
            let recalled = try await worker.send(Array("{}".utf8), messageType: "Recall", to: memo)
            #expect(recalled.messageType == "Memo")
            #expect(String(decoding: recalled.payload, as: UTF8.self) == document)
            // What the agent changes by itself is what the next save gives.
            _ = try await worker.send(Array("[7]".utf8), messageType: "Remember", to: memo)
            #expect(try await client.saveState(of: memo) == "[7]")
            try await client.deleteState(of: memo)
            #expect(try await client.saveState(of: memo) == "null")
            // A binary state travels as a data URL: the counter's (version 1, count 5).
            let counterState = "data:application/octet-stream;base64,AQUAAAAAAAAA"
            try await client.loadState(counterState, into: Self.counter)
            #expect(try await client.saveState(of: Self.counter) == counterState)
            let count = try await worker.send(Array("{}".utf8), messageType: "Get", to: Self.counter)
            let counted = try JSONSerialization.jsonObject(with: Data(count.payload)) as? [String: Any]
            #expect(counted?["count"] as? Int == 5, "\(String(decoding: count.payload, as: UTF8.self))")
            // A type without snapshot/restore says so.
            let stateless = await Self.failure { () throws(StateClient.Failure) in
                _ = try await client.saveState(of: AgentID(type: "publisher", key: "p"))
            }
            #expect(stateless?.code == .answeredWithError)
            #expect(stateless?.message.contains("keeps no state") == true, "\(String(describing: stateless))")
            await worker.close()
            await client.close()
        }
    }

    @Test("an unreachable host is reported as such")
    func unreachableHost() async throws {
        // Port 1: nothing listens there. (Not a port that was just free: in a parallel run
        // another test's host may take it meanwhile.)
        let address = "127.0.0.1:1"
        let client = try StateClient(address: address)
        // The refusal ends the call at once; the long timeout only keeps a loaded machine
        // (AddressSanitizer, a parallel run: over 10 s seen in CI) from reporting a timeout instead.
        let failure = await Self.failure { () throws(StateClient.Failure) in
            _ = try await client.saveState(of: Self.counter, timeout: .seconds(60))
        }
        #expect(failure?.code == .channelFailed)
        #expect(failure?.message.hasPrefix("the host at \(address) is unreachable (UNAVAILABLE") == true)
        await client.close()
    }

    @Test("after a host restart the runtime's control channel is back, and requests reach it again")
    func hostRestart() async throws {
        let setup = try await Setup.start()
        let port = setup.host.port
        let mark = setup.log.count
        await setup.host.shutdown(gracePeriod: .zero)
        let secondHost = try AgentHost(configuration: .init(listen: "127.0.0.1:\(port)"), logger: Logger(label: "test.host2"))
        let attached = await setup.log.wait(since: mark, timeout: .seconds(20)) { $0.message == "control channel attached" }
        #expect(attached != nil)
        // The runtime registers its types again on its own schedule: ask until the host routes.
        let client = try StateClient(address: "127.0.0.1:\(port)")
        var last: (any Error)?
        let answered = await poll(timeout: .seconds(10)) {
            do {
                try await client.loadState("[2]", into: Self.counter)
                return true
            } catch {
                last = error
                return false
            }
        }
        #expect(answered, "\(String(describing: last))")
        #expect(try await client.saveState(of: Self.counter) == "[2]")
        await client.close()
        await setup.runtime.shutdown()
        await secondHost.shutdown()
        try? FileManager.default.removeItem(atPath: setup.directory)
    }
}
