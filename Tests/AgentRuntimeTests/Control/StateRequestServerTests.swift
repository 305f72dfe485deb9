@testable import AgentRuntime
import AgentCore
import AgentTestSupport
import Logging
import Testing

@Suite("StateRequestServer: every state request answered once, to its respond_to")
struct StateRequestServerTests {
    typealias StateMessage = ControlPlaneCodec.StateMessage

    /// A server over `agents` serving the agent types `counter` and `echo`.
    static func server(_ agents: any AgentStateControl = MemoryStateControl(), timeout: Duration = .seconds(10),
                       maxMessageBytes: Int = 4 * 1024 * 1024, maxPending: Int = 1_000,
                       log: LogCapture = LogCapture()) -> StateRequestServer {
        StateRequestServer(
            agents: agents, servesAgentType: { ["counter", "echo"].contains($0) }, timeout: timeout,
            maxMessageBytes: maxMessageBytes, maxPending: maxPending, logger: log.logger())
    }

    /// The answers a server sent, decoded, in order.
    final class Replies: Sendable {
        let received = AsyncCondition<[ControlPlaneCodec.ControlMessage]>([])

        var reply: @Sendable ([UInt8]) -> Void {
            { [received] bytes in
                let message = try! bytes.withUnsafeBytes { try ControlPlaneCodec.decodeControlMessage($0) }
                received.mutate { $0.append(message) }
            }
        }

        /// The state message of the answer to `rpcID`, waited for (10 s).
        func answer(to rpcID: String) async throws -> StateMessage {
            let all = try #require(await received.wait { $0.contains { $0.rpcID == rpcID } }, "no answer to \(rpcID)")
            let message = try #require(all.first { $0.rpcID == rpcID })
            #expect(message.destination == "clientid=asker")
            #expect(message.respondTo.isEmpty, "an answer is a response: no respond_to")
            let any = try #require(message.rpcMessage)
            return try #require(try ControlPlaneCodec.decodeStateMessage(any))
        }
    }

    static func request(_ rpcID: String, _ message: StateMessage, respondTo: String = "clientid=asker")
        -> ControlPlaneCodec.ControlMessage {
        .init(rpcID: rpcID, destination: "agentid=whatever/k", respondTo: respondTo,
              rpcMessage: ControlPlaneCodec.encodeStateMessage(message))
    }

    static let counter = AgentID(type: "counter", key: "a")

    @Test("a loaded JSON state is saved back unchanged; a binary one as a base64 data URL")
    func loadThenSave() async throws {
        let server = Self.server()
        let replies = Replies()
        server.serve(Self.request("l1", .loadStateRequest(agent: Self.counter, state: #"{"count": 3}"#)), reply: replies.reply)
        #expect(try await replies.answer(to: "l1") == .loadStateResponse(error: ""))
        server.serve(Self.request("s1", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "s1") == .saveStateResponse(state: #"{"count": 3}"#, error: ""))

        let binary = "data:application/octet-stream;base64,AQUAAAAAAAAA"
        server.serve(Self.request("l2", .loadStateRequest(agent: Self.counter, state: binary)), reply: replies.reply)
        #expect(try await replies.answer(to: "l2") == .loadStateResponse(error: ""))
        server.serve(Self.request("s2", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "s2") == .saveStateResponse(state: binary, error: ""))
    }

    @Test("a state the agent never wrote as JSON is saved as a data URL")
    func binarySnapshot() async throws {
        let server = Self.server(MemoryStateControl([Self.counter: [1, 5, 0, 0, 0, 0, 0, 0, 0]]))
        let replies = Replies()
        server.serve(Self.request("s", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "s")
            == .saveStateResponse(state: "data:application/octet-stream;base64,AQUAAAAAAAAA", error: ""))
    }

    @Test("delete forgets: a later save answers the AgentStateControl's error")
    func delete() async throws {
        let server = Self.server(MemoryStateControl([Self.counter: Array("{}".utf8)]))
        let replies = Replies()
        server.serve(Self.request("d", .deleteStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "d") == .deleteStateResponse(error: ""))
        server.serve(Self.request("s", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "s") == .saveStateResponse(state: "", error: "no state kept for counter/a"))
    }

    @Test("the AgentStateControl's error reaches the requester as the response's error")
    func controlError() async throws {
        let server = Self.server()
        let replies = Replies()
        server.serve(Self.request("l", .loadStateRequest(agent: Self.counter, state: "refuse me")), reply: replies.reply)
        #expect(try await replies.answer(to: "l") == .loadStateResponse(error: "counter/a refused the state"))
    }

    @Test("a request for an agent type the runtime does not serve is answered with an error naming the type")
    func unservedType() async throws {
        let server = Self.server()
        let replies = Replies()
        let stranger = AgentID(type: "stranger", key: "k")
        server.serve(Self.request("s", .saveStateRequest(agent: stranger)), reply: replies.reply)
        server.serve(Self.request("l", .loadStateRequest(agent: stranger, state: "{}")), reply: replies.reply)
        server.serve(Self.request("d", .deleteStateRequest(agent: stranger)), reply: replies.reply)
        #expect(try await replies.answer(to: "s")
            == .saveStateResponse(state: "", error: "agent type 'stranger' is not served by this runtime (saving the state of stranger/k)"))
        #expect(try await replies.answer(to: "l")
            == .loadStateResponse(error: "agent type 'stranger' is not served by this runtime (loading the state of stranger/k)"))
        #expect(try await replies.answer(to: "d")
            == .deleteStateResponse(error: "agent type 'stranger' is not served by this runtime (deleting the state of stranger/k)"))
    }

    @Test("a malformed data URL is refused, saying what is wrong with it")
    func malformedDataURL() async throws {
        let server = Self.server()
        let replies = Replies()
        server.serve(Self.request("l", .loadStateRequest(agent: Self.counter, state: "data:;base64,AQI")), reply: replies.reply)
        guard case .loadStateResponse(let error) = try await replies.answer(to: "l") else {
            Issue.record("not a LoadStateResponse")
            return
        }
        #expect(error.hasPrefix("cannot load the state of counter/a: the state is not a valid data URL (its base64 data is 3 characters long, not a multiple of 4)"))
    }

    @Test("a request naming no agent, or a malformed one, is answered with the matching response's error")
    func malformedRequests() async throws {
        let server = Self.server()
        let replies = Replies()
        server.serve(Self.request("s", .saveStateRequest(agent: nil)), reply: replies.reply)
        server.serve(Self.request("d", .deleteStateRequest(agent: AgentID(type: "", key: "k"))), reply: replies.reply)
        server.serve(.init(
            rpcID: "m", destination: "agentid=counter/a", respondTo: "clientid=asker",
            rpcMessage: .init(typeURL: "type.googleapis.com/agents.LoadStateRequest", value: [0x0a, 0x09])),
            reply: replies.reply)
        #expect(try await replies.answer(to: "s") == .saveStateResponse(
            state: "", error: "the agents.SaveStateRequest names no agent (its agentId, or the agent type in it, is missing)"))
        #expect(try await replies.answer(to: "d") == .deleteStateResponse(
            error: "the agentd.DeleteStateRequest names no agent (its agentId, or the agent type in it, is missing)"))
        guard case .loadStateResponse(let error) = try await replies.answer(to: "m") else {
            Issue.record("not a LoadStateResponse")
            return
        }
        #expect(error.hasPrefix("malformed agents.LoadStateRequest: the 2 bytes are not a valid agents.LoadStateRequest"))
    }

    @Test("a request still running at the deadline is answered 'timed out after' the timeout")
    func deadline() async throws {
        let server = Self.server(timeout: .milliseconds(300))
        let replies = Replies()
        let started = ContinuousClock.now
        server.serve(Self.request("stuck", .saveStateRequest(agent: AgentID(type: "counter", key: "stuck"))), reply: replies.reply)
        #expect(try await replies.answer(to: "stuck") == .saveStateResponse(
            state: "", error: "saving the state of counter/stuck timed out after 300 ms (the runtime's handler timeout); the request is withdrawn (one that had already begun may still complete)"))
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(await poll { server.pendingCount == 0 })
    }

    @Test("a request whose agent does not answer holds up no other request")
    func concurrency() async throws {
        let server = Self.server(MemoryStateControl([Self.counter: Array("[1]".utf8)]), timeout: .seconds(60))
        let replies = Replies()
        server.serve(Self.request("stuck", .saveStateRequest(agent: AgentID(type: "counter", key: "stuck"))), reply: replies.reply)
        server.serve(Self.request("fast", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        server.serve(Self.request("slow", .deleteStateRequest(agent: AgentID(type: "echo", key: "slow"))), reply: replies.reply)
        #expect(try await replies.answer(to: "fast") == .saveStateResponse(state: "[1]", error: ""))
        #expect(try await replies.answer(to: "slow") == .deleteStateResponse(error: ""))
        #expect(!replies.received.value.contains { $0.rpcID == "stuck" })
        #expect(server.pendingCount == 1)
        server.abandonPending(reason: "test over")
    }

    @Test("past maxPending requests in progress, more are refused with an error saying to try again")
    func bounded() async throws {
        let server = Self.server(timeout: .seconds(60), maxPending: 2)
        let replies = Replies()
        for rpcID in ["held-1", "held-2"] {
            server.serve(Self.request(rpcID, .saveStateRequest(agent: AgentID(type: "counter", key: "stuck"))), reply: replies.reply)
        }
        #expect(await poll { server.pendingCount == 2 })
        server.serve(Self.request("third", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "third") == .saveStateResponse(
            state: "", error: "2 state requests are in progress on this runtime already; try again once they are answered (saving the state of counter/a)"))
        #expect(!replies.received.value.contains { $0.rpcID.hasPrefix("held") })
        server.abandonPending(reason: "test over")
    }

    @Test("an answer over the message size limit is replaced by an error giving both sizes")
    func oversizedAnswer() async throws {
        let big = Array(("\"" + String(repeating: "x", count: 2_000) + "\"").utf8)
        let server = Self.server(MemoryStateControl([Self.counter: big]), maxMessageBytes: 1_000)
        let replies = Replies()
        server.serve(Self.request("s", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        guard case .saveStateResponse(let state, let error) = try await replies.answer(to: "s") else {
            Issue.record("not a SaveStateResponse")
            return
        }
        #expect(state.isEmpty)
        #expect(error.hasPrefix("the answer is "))
        #expect(error.contains(" bytes, over the message size limit of 1000 bytes"))
    }

    @Test("at shutdown, requests still being served are answered with an error, and new ones refused")
    func shutdown() async throws {
        let server = Self.server(timeout: .seconds(60))
        let replies = Replies()
        server.serve(Self.request("stuck", .deleteStateRequest(agent: AgentID(type: "echo", key: "stuck"))), reply: replies.reply)
        #expect(await poll { server.pendingCount == 1 })
        server.closeIntake()
        server.serve(Self.request("late", .saveStateRequest(agent: Self.counter)), reply: replies.reply)
        #expect(try await replies.answer(to: "late")
            == .saveStateResponse(state: "", error: "the runtime is shutting down (saving the state of counter/a)"))
        #expect(server.abandonPending(reason: "the runtime is shutting down") == 1)
        #expect(try await replies.answer(to: "stuck") == .deleteStateResponse(error: "the runtime is shutting down"))
        // Exactly one answer each.
        #expect(replies.received.value.map(\.rpcID).sorted() == ["late", "stuck"])
    }

    @Test("responses, unknown messages and requests without respond_to get no answer, and are logged")
    func unanswerable() async throws {
        let log = LogCapture()
        let server = Self.server(log: log)
        let replies = Replies()
        server.serve(Self.request("r", .saveStateResponse(state: "{}", error: "")), reply: replies.reply)
        server.serve(.init(
            rpcID: "u", destination: "agentid=counter/a", respondTo: "clientid=asker",
            rpcMessage: .init(typeURL: "type.googleapis.com/agents.Unknown", value: [])), reply: replies.reply)
        server.serve(Self.request("n", .saveStateRequest(agent: Self.counter), respondTo: ""), reply: replies.reply)
        // A request served after them is answered first: the three were dropped at once.
        server.serve(Self.request("last", .deleteStateRequest(agent: Self.counter)), reply: replies.reply)
        _ = try await replies.answer(to: "last")
        #expect(replies.received.value.map(\.rpcID) == ["last"])
        #expect(log.records { $0.message == "control message of a type this runtime does not serve dropped" }.count == 1)
        #expect(log.records { $0.message.hasPrefix("state request without respond_to dropped") }.count == 1)
        #expect(log.records { $0.message.hasPrefix("state response dropped") }.count == 1)
    }
}
