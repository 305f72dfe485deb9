import ProtoWire
import Foundation
import GRPCTransport
import Testing

@Suite("RPC relay: requests reach the target type's owner, answers (or errors) come back to the caller")
struct RPCRelayTests {
    @Test("a request reaches the owner of the target type unchanged but for its id, and the answer returns under the caller's id")
    func relay() async throws {
        try await withHost { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            try caller.request(
                id: "7", target: AgentRef("echo", "room/1"), method: "handle_ask", payload: .json("Ask", #"{"q": 1}"#),
                source: AgentRef("asker", "default"), metadata: [("traceparent", traceparent)])

            let request = try await target.waitForRequest()
            #expect(request.target == AgentRef("echo", "room/1"))
            #expect(request.source == AgentRef("asker", "default"))
            #expect(request.method == "handle_ask")
            #expect(request.payload == .json("Ask", #"{"q": 1}"#))
            #expect(request.metadata == ["traceparent": traceparent])
            // Everything but the request id is the caller's bytes.
            #expect(byteDifference(request.bytes, DataMessageBuilder.request(
                id: request.requestID, source: AgentRef("asker", "default"), target: AgentRef("echo", "room/1"),
                method: "handle_ask", payload: .json("Ask", #"{"q": 1}"#), metadata: [("traceparent", traceparent)])) == nil)

            try target.respond(
                to: request.requestID, payload: .json("Answer", #"{"a": 2}"#), metadata: [("tracestate", "x=1")])
            let response = try await caller.waitForResponse(to: "7")
            #expect(response.error.isEmpty)
            #expect(byteDifference(response.bytes, DataMessageBuilder.response(
                id: "7", payload: .json("Answer", #"{"a": 2}"#), metadata: [("tracestate", "x=1")])) == nil)
        }
    }

    @Test("a handler's error travels back to the caller as the response's error")
    func handlerError() async throws {
        try await withHost { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try caller.request(id: "1", target: AgentRef("echo", "k"))
            let request = try await target.waitForRequest()
            try target.respond(to: request.requestID, payload: nil, error: "ValueError: no such thing")
            let response = try await caller.waitForResponse(to: "1")
            #expect(response.error == "ValueError: no such thing")
            #expect(response.payload == nil)
        }
    }

    @Test("two callers using the same request id concurrently each get their own answer")
    func sameRequestIDFromTwoCallers() async throws {
        try await withHost { harness in
            let alice = try await harness.worker("alice")
            let bob = try await harness.worker("bob")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try alice.request(id: "1", target: AgentRef("echo", "k"), payload: .json("Ask", "from alice"))
            try bob.request(id: "1", target: AgentRef("echo", "k"), payload: .json("Ask", "from bob"))
            let fromAlice = try await target.waitForRequest(saying: "from alice")
            let fromBob = try await target.waitForRequest(saying: "from bob")
            #expect(fromAlice.requestID != fromBob.requestID, "the target must be able to tell the two calls apart")
            // Answer in the other order than they were asked.
            try target.respond(to: fromBob.requestID, payload: .json("Answer", "for bob"))
            try target.respond(to: fromAlice.requestID, payload: .json("Answer", "for alice"))

            let aliceAnswer = try await alice.waitForResponse(to: "1")
            let bobAnswer = try await bob.waitForResponse(to: "1")
            #expect(aliceAnswer.payload?.text == "for alice")
            #expect(bobAnswer.payload?.text == "for bob")
            // Exactly one answer each: make both callers' streams catch up with the target's.
            try await alice.register("alice-agent")
            try await bob.register("bob-agent")
            #expect(try await alice.catchUp(with: target, agentType: "alice-agent").responses.count == 1)
            #expect(try await bob.catchUp(with: target, agentType: "bob-agent").responses.count == 1)
        }
    }

    @Test("a request to an agent type nobody registered gets an error response at once, under the caller's id")
    func unknownTargetType() async throws {
        // The host's RPC deadline is a minute: an answer within seconds is not the deadline's.
        try await withHost(rpcTimeout: .seconds(60)) { harness in
            let caller = try await harness.worker("caller")
            try caller.request(id: "req-42", target: AgentRef("nobody-home", "k"))
            let response = try await caller.waitForResponse(to: "req-42", timeout: .seconds(5))
            #expect(!response.error.isEmpty)
            #expect(response.error.contains("nobody-home"))
            #expect(response.payload == nil)
        }
    }

    @Test("a request to a type registered by a client with no data channel open gets an error response at once")
    func ownerWithoutDataChannel() async throws {
        try await withHost(rpcTimeout: .seconds(60)) { harness in
            var register = ProtoWriter()
            register.stringField(1, "ghost-agent")
            _ = try await harness.channel().unary(
                method: "/agents.AgentRpc/RegisterAgent", request: MessageBuffer(register.bytes),
                metadata: ["client-id": "ghost-client"], waitForReady: true)
            let caller = try await harness.worker("caller")
            try caller.request(id: "boo", target: AgentRef("ghost-agent", "k"))
            let response = try await caller.waitForResponse(to: "boo", timeout: .seconds(5))
            #expect(response.error.contains("ghost-agent"))
        }
    }

    @Test("a target that disconnects with a request pending makes the host answer the caller with an error")
    func targetDisconnects() async throws {
        try await withHost(rpcTimeout: .seconds(60)) { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try caller.request(id: "1", target: AgentRef("echo", "k"))
            _ = try await target.waitForRequest()
            await target.disconnect()
            let response = try await caller.waitForResponse(to: "1", timeout: .seconds(5))
            #expect(!response.error.isEmpty)
            #expect(response.error.contains("echo/k"))
            // The caller's stream is fine.
            #expect(caller.log.value.status == nil)
        }
    }

    @Test("a request unanswered past the host's rpcTimeout gets an error response; a late answer is dropped")
    func timeout() async throws {
        try await withHost(rpcTimeout: .milliseconds(300)) { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("slow")
            let clock = ContinuousClock()
            let start = clock.now
            try caller.request(id: "1", target: AgentRef("slow", "k"), payload: .json("Ask", "first"))
            let request = try await target.waitForRequest(saying: "first")
            let response = try await caller.waitForResponse(to: "1", timeout: .seconds(5))
            let elapsed = clock.now - start
            #expect(!response.error.isEmpty)
            #expect(elapsed >= .milliseconds(300), "answered after \(elapsed), before the deadline")

            // The late answer is dropped: once the target's next message reaches the caller,
            // the late answer would have arrived before it.
            try await caller.register("caller-agent")
            try target.respond(to: request.requestID, payload: .json("Answer", "too late"))
            let log = try await caller.catchUp(with: target, agentType: "caller-agent")
            #expect(log.responses.count == 1)
            #expect(log.responses.allSatisfy { $0.payload?.text != "too late" })
        }
    }

    @Test("a response from a connection the request was not sent to is dropped; the target's own answer still arrives")
    func responseFromWrongConnection() async throws {
        try await withHost { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            let intruder = try await harness.worker("intruder")
            try await target.register("echo")
            try await intruder.register("intruder-agent")
            try caller.request(id: "1", target: AgentRef("echo", "k"))
            let request = try await target.waitForRequest()

            // The intruder answers with the id the target saw, and makes sure the host has
            // handled that before the target answers.
            try intruder.respond(to: request.requestID, payload: .json("Answer", "forged"))
            try await intruder.catchUp(with: intruder, agentType: "intruder-agent")

            try target.respond(to: request.requestID, payload: .json("Answer", "genuine"))
            let log = try await caller.waitFor("the answer") { !$0.responses.isEmpty }
            #expect(log.responses.map { $0.payload?.text } == ["genuine"])
            #expect(log.responses.first?.requestID == "1")
        }
    }

    @Test("a second answer to the same request is dropped")
    func duplicateAnswer() async throws {
        try await withHost { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try await caller.register("caller-agent")
            try caller.request(id: "1", target: AgentRef("echo", "k"))
            let request = try await target.waitForRequest()
            try target.respond(to: request.requestID, payload: .json("Answer", "first"))
            try target.respond(to: request.requestID, payload: .json("Answer", "second"))
            let log = try await caller.catchUp(with: target, agentType: "caller-agent")
            #expect(log.responses.map { $0.payload?.text } == ["first"])
        }
    }

    @Test("many concurrent requests from several callers each get exactly their own answer")
    func manyConcurrentRequests() async throws {
        try await withHost { harness in
            let target = try await harness.worker("target")
            try await target.register("echo")
            var callers: [RawWorker] = []
            for index in 0..<4 { callers.append(try await harness.worker("caller-\(index)")) }
            let perCaller = 100
            for round in 0..<perCaller {
                for (index, caller) in callers.enumerated() {
                    try caller.request(id: "\(round)", target: AgentRef("echo", "k"), payload: .json("Ask", "\(index):\(round)"))
                }
            }
            let total = perCaller * callers.count
            let requests = try await target.waitFor("every request", timeout: .seconds(30)) {
                $0.requests.count >= total
            }.requests
            #expect(Set(requests.map(\.requestID)).count == requests.count, "the host's request ids are unique")
            for request in requests {
                try target.respond(to: request.requestID, payload: .json("Answer", "re " + (request.payload?.text ?? "")))
            }
            for (index, caller) in callers.enumerated() {
                let log = try await caller.waitFor("every answer", timeout: .seconds(30)) { $0.responses.count >= perCaller }
                let answers = Dictionary(uniqueKeysWithValues: log.responses.map { ($0.requestID, $0.payload?.text ?? "") })
                #expect(answers.count == perCaller)
                for round in 0..<perCaller {
                    #expect(answers["\(round)"] == "re \(index):\(round)")
                }
            }
        }
    }
}
