import AgentPluginABI
import AgentSDK
import Foundation
import Testing

@Suite("Delivering messages to Swift handlers through the C handler table")
struct AgentInstanceTests {
    let runtime: FakeRuntime
    let plugin: LoadedPlugin

    init() throws {
        runtime = FakeRuntime(settings: ["greeting": "Bonjour"])
        plugin = try #require(runtime.load(Plugin(name: "test-plugin", version: "1.0.0",
                                                  agents: [Greeter.self, Workbench.self, Unbuildable.self])))
    }

    @Test("an event Greeting publishes a GreetingReply to greeting-replies, on the incoming source")
    func greetingEvent() async throws {
        let greeter = try plugin.create(AgentID(type: "greeter", key: "room-7"))
        defer { greeter.destroy() }
        let answer = try await greeter.handle("Greeting", json: #"{"name": "Ada"}"#, rpc: false,
                                              topic: TopicID(type: "greetings", source: "room-7"))
        #expect(answer == .reply(messageType: "", contentType: "", json: ""))
        let publication = try #require(runtime.publications.first)
        #expect(runtime.publications.count == 1)
        #expect(publication.from == AgentID(type: "greeter", key: "room-7"))
        #expect(publication.topic == TopicID(type: "greeting-replies", source: "room-7"))
        #expect(publication.messageType == "GreetingReply")
        #expect(publication.contentType == "application/json")
        #expect(try JSONDecoder().decode([String: String].self, from: Data(publication.json.utf8))
                == ["text": "Bonjour, Ada!"])
    }

    @Test("an RPC is answered with the handler's result, encoded")
    func rpcAnswer() async throws {
        let greeter = try plugin.create(AgentID(type: "greeter", key: "default"))
        defer { greeter.destroy() }
        let answer = try await greeter.handle("Greeting", json: #"{"name": "Grace"}"#, rpc: true)
        #expect(answer == .reply(messageType: "GreetingReply", contentType: "application/json",
                                 json: #"{"text":"Bonjour, Grace!"}"#))
    }

    @Test("malformed JSON fails the RPC with INVALID_ARGUMENT, naming the message type")
    func malformed() async throws {
        let greeter = try plugin.create(AgentID(type: "greeter", key: "default"))
        defer { greeter.destroy() }
        let answer = try await greeter.handle("Greeting", json: #"{"name": "#, rpc: true)
        guard case .fail(let status, let message) = answer else {
            Issue.record("expected a failure, got \(answer)")
            return
        }
        #expect(status == AGENTD_INVALID_ARGUMENT.rawValue)
        #expect(message.hasPrefix("cannot decode Greeting from its JSON payload"))
    }

    @Test("an unknown key fails the RPC with INVALID_ARGUMENT, naming the key")
    func unknownKey() async throws {
        let greeter = try plugin.create(AgentID(type: "greeter", key: "default"))
        defer { greeter.destroy() }
        let answer = try await greeter.handle("Greeting", json: #"{"name": "Ada", "age": 36}"#, rpc: true)
        guard case .fail(let status, let message) = answer else {
            Issue.record("expected a failure, got \(answer)")
            return
        }
        #expect(status == AGENTD_INVALID_ARGUMENT.rawValue)
        #expect(message.contains(#"unknown key "age""#))
    }

    @Test("a thrown error is the RPC's error: an AgentError's code and message, or FAILED and the description")
    func thrownErrors() async throws {
        let bench = try plugin.create(AgentID(type: "workbench", key: "default"))
        defer { bench.destroy() }
        #expect(try await bench.handle("Refuse", json: #"{"politely": false}"#, rpc: true)
                == .fail(status: AGENTD_FAILED.rawValue, message: "not today, thank you"))
        #expect(try await bench.handle("Refuse", json: #"{"politely": true}"#, rpc: true)
                == .fail(status: AGENTD_INVALID_ARGUMENT.rawValue, message: "politely refused"))
    }

    @Test("an RPC failed on purpose logs nothing: the runtime's fail() returns the status it was given")
    func failureIsNoRefusedAnswer() async throws {
        let bench = try plugin.create(AgentID(type: "workbench", key: "quiet"))
        defer { bench.destroy() }
        // Undecodable input, a thrown AgentError, any other thrown error. None
        // of these handlers suspends, so each task has ended (and logged, if it would) before
        // the C handler returned.
        for (type, json) in [("Echo", "{oops"), ("Echo", "[]"), ("Refuse", #"{"politely": true}"#),
                             ("Refuse", #"{"politely": false}"#)] {
            let answer = try await bench.handle(type, json: json, rpc: true)
            guard case .fail = answer else {
                Issue.record("\(type) \(json): expected a failure, got \(answer)")
                continue
            }
        }
        #expect(runtime.logs.filter { $0.level == AGENTD_LOG_ERROR.rawValue }.map(\.text) == [])
    }

    @Test("the handler sees its agent id, the sender, and the topic of an event")
    func deliveryContext() async throws {
        let bench = try plugin.create(AgentID(type: "workbench", key: "k1"))
        defer { bench.destroy() }
        let rpc = try await bench.handle("Whoami", json: "{}", rpc: true, sender: AgentID(type: "py", key: "0"))
        guard case .reply(_, _, let json) = rpc else {
            Issue.record("expected a reply, got \(rpc)")
            return
        }
        let identity = try JSONDecoder().decode(Identity.self, from: Data(json.utf8))
        #expect(identity.agent == "workbench/k1")
        #expect(identity.sender == "py/0")
        #expect(identity.topic == nil)
        #expect(identity.isRPC)

        _ = try await bench.handle("Whoami", json: "{}", rpc: false, topic: TopicID(type: "t", source: "k1"))
        let published = try #require(runtime.publications.last)
        let event = try JSONDecoder().decode(Identity.self, from: Data(published.json.utf8))
        #expect(event.sender == nil)
        #expect(event.topic == "t/k1")
        #expect(!event.isRPC)
    }

    @Test("an RPC of an event-only type, or an event of an RPC-only type, is UNKNOWN_MESSAGE_TYPE")
    func wrongKind() async throws {
        let bench = try plugin.create(AgentID(type: "workbench", key: "default"))
        defer { bench.destroy() }
        #expect(try await bench.handle("Note", json: #"{"text": "x"}"#, rpc: true)
                == .fail(status: AGENTD_UNKNOWN_MESSAGE_TYPE.rawValue,
                         message: "agent type workbench has no RPC handler for Note"))
        let (status, call) = bench.deliver("Relay", json: #"{"target": "a", "text": "b"}"#, rpc: false)
        #expect(status == AGENTD_UNKNOWN_MESSAGE_TYPE)
        #expect(call.answers == [.fail(status: AGENTD_UNKNOWN_MESSAGE_TYPE.rawValue,
                                       message: "agent type workbench has no event handler for Relay")])
    }

    @Test("a protobuf payload for a JSON message's handler is refused: an AgentMessage is read from JSON only")
    func protobuf() async throws {
        let greeter = try plugin.create(AgentID(type: "greeter", key: "default"))
        defer { greeter.destroy() }
        let answer = try await greeter.handle("Greeting", json: "\u{0a}\u{03}Ada", rpc: true,
                                              contentType: "application/x-protobuf")
        guard case .fail(let status, let message) = answer else {
            Issue.record("expected a failure, got \(answer)")
            return
        }
        #expect(status == AGENTD_INVALID_ARGUMENT.rawValue)
        #expect(message.contains("application/x-protobuf"))
    }

    @Test("an init that throws fails create with AGENTD_FAILED and logs why")
    func failingInit() throws {
        #expect(throws: CreateFailed(status: AGENTD_FAILED.rawValue)) {
            try plugin.create(AgentID(type: "unbuildable", key: "u"))
        }
        let line = try #require(runtime.logs.last)
        #expect(line.text == "creating agent unbuildable/u failed: the widget is missing")
        #expect(line.level == AGENTD_LOG_ERROR.rawValue)
    }

    @Test("handlers log through the runtime, tagged with their agent")
    func logging() async throws {
        let bench = try plugin.create(AgentID(type: "workbench", key: "loud"))
        defer { bench.destroy() }
        _ = try await bench.handle("Echo", json: #"{"text": "hi"}"#, rpc: false)
        let line = try #require(runtime.logs.last)
        #expect(line.text == "heard hi")
        #expect(line.agent == AgentID(type: "workbench", key: "loud"))
        #expect(line.level == AGENTD_LOG_WARNING.rawValue)
    }

    @Test("every message is answered exactly once")
    func exactlyOnce() async throws {
        let bench = try plugin.create(AgentID(type: "workbench", key: "once"))
        defer { bench.destroy() }
        for (type, json) in [("Echo", #"{"text": "a"}"#), ("Refuse", #"{"politely": true}"#), ("Echo", "nope")] {
            let (status, call) = bench.deliver(type, json: json, rpc: true)
            #expect(status == AGENTD_PENDING)
            _ = try await call.answer()
            #expect(call.answers.count == 1)
        }
    }
}
