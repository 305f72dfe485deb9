import Foundation
import Testing

@Suite("Messages over maxMessageBytes are refused, and every stream keeps working")
struct MessageSizeLimitTests {
    static let limit = 64 * 1024
    static let oversized = 100 * 1024

    @Test("a 100 KiB publish is not delivered; the publisher's next publish and other publishers' are")
    func oversizedPublish() async throws {
        try await withHost(maxMessageBytes: Self.limit) { harness in
            let publisher = try await harness.worker("publisher")
            let bystander = try await harness.worker("bystander")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.subscribe(id: "s", topicType: "news", agentType: "alpha")

            try publisher.publish(topicType: "news", source: "k", id: "big", json: Self.jsonString(bytes: Self.oversized))
            let small = try publisher.publish(topicType: "news", source: "k", id: "small")
            let fromBystander = try bystander.publish(topicType: "news", source: "k", id: "bystander")

            let log = try await receiver.catchUp(with: publisher, agentType: "alpha")
            #expect(log.events.map(\.id).filter { $0 != "bystander" } == ["small"])
            #expect(byteDifference(log.events.first { $0.id == "small" }?.bytes, small) == nil)
            let afterBystander = try await receiver.catchUp(with: bystander, agentType: "alpha")
            #expect(afterBystander.events.contains { $0.bytes == fromBystander })
            #expect(publisher.log.value.status == nil, "the publisher's stream must stay open")
        }
    }

    @Test("a message of exactly maxMessageBytes is delivered; one byte more is not")
    func boundary() async throws {
        try await withHost(maxMessageBytes: Self.limit) { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.subscribe(id: "s", topicType: "news", agentType: "alpha")
            let atLimit = Self.event(id: "at-limit", totalBytes: Self.limit)
            let overLimit = Self.event(id: "over-limit", totalBytes: Self.limit + 1)
            #expect(atLimit.count == Self.limit)
            #expect(overLimit.count == Self.limit + 1)
            try publisher.send(overLimit)
            try publisher.send(atLimit)
            let log = try await receiver.catchUp(with: publisher, agentType: "alpha")
            #expect(log.events.map(\.id) == ["at-limit"])
            #expect(byteDifference(log.events.first?.bytes, atLimit) == nil)
        }
    }

    @Test("a 100 KiB request gets an error response under the caller's id and never reaches the target; later requests work")
    func oversizedRequest() async throws {
        try await withHost(maxMessageBytes: Self.limit) { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try caller.request(id: "big", target: AgentRef("echo", "k"), payload: .json("Ask", Self.jsonString(bytes: Self.oversized)))
            let refusal = try await caller.waitForResponse(to: "big")
            #expect(!refusal.error.isEmpty)
            #expect(refusal.error.contains("\(Self.limit)"))

            try caller.request(id: "small", target: AgentRef("echo", "k"), payload: .json("Ask", "small"))
            let request = try await target.waitForRequest(saying: "small")
            #expect(target.log.value.requests.count == 1, "the oversized request must not reach the target")
            try target.respond(to: request.requestID, payload: .json("Answer", "ok"))
            #expect(try await caller.waitForResponse(to: "small").payload?.text == "ok")
            #expect(caller.log.value.status == nil && target.log.value.status == nil)
        }
    }

    @Test("a 100 KiB answer is refused: the caller gets an error response, and the target's stream keeps working")
    func oversizedResponse() async throws {
        try await withHost(maxMessageBytes: Self.limit) { harness in
            let caller = try await harness.worker("caller")
            let target = try await harness.worker("target")
            try await target.register("echo")
            try caller.request(id: "1", target: AgentRef("echo", "k"), payload: .json("Ask", "first"))
            let first = try await target.waitForRequest(saying: "first")
            try target.respond(to: first.requestID, payload: .json("Answer", Self.jsonString(bytes: Self.oversized)))
            let refusal = try await caller.waitForResponse(to: "1")
            #expect(!refusal.error.isEmpty)
            #expect(refusal.payload == nil)

            try caller.request(id: "2", target: AgentRef("echo", "k"), payload: .json("Ask", "second"))
            let second = try await target.waitForRequest(saying: "second")
            try target.respond(to: second.requestID, payload: .json("Answer", "small"))
            #expect(try await caller.waitForResponse(to: "2").payload?.text == "small")
        }
    }

    @Test("a publish far over the limit (2 MiB against 64 KiB) is refused and the publisher's stream stays up")
    func farOversizedPublish() async throws {
        try await withHost(maxMessageBytes: Self.limit) { harness in
            let publisher = try await harness.worker("publisher")
            let receiver = try await harness.worker("receiver")
            try await receiver.register("alpha")
            try await receiver.subscribe(id: "s", topicType: "news", agentType: "alpha")
            try publisher.publish(topicType: "news", source: "k", id: "huge", json: Self.jsonString(bytes: 2 * 1024 * 1024))
            _ = try? publisher.publish(topicType: "news", source: "k", id: "small")
            // A request the host answers at once tells whether the stream is still up.
            _ = try? publisher.request(id: "after-huge", target: AgentRef("nobody-agent", "k"))
            let log = try await publisher.waitFor("an answer to a later request, or the end of the stream") {
                $0.status != nil || $0.responses.contains { $0.requestID == "after-huge" }
            }
            withKnownIssue("""
                The host lets the C core accept messages up to 2 x maxMessageBytes + 1 MiB \
                (AgentHost.init, `hardLimit`); a larger one makes the C core end the sender's whole \
                stream with RESOURCE_EXHAUSTED, and the host then forgets the worker's agent types \
                and subscriptions. With the default 4 MiB limit: any message over 9 MiB.
                """) {
                #expect(log.status == nil, "the publisher's stream ended: \(log.status.map(\.description) ?? "")")
            }
            if log.status == nil {
                let received = try await receiver.catchUp(with: publisher, agentType: "alpha")
                #expect(received.events.map(\.id) == ["small"])
            }
        }
    }

    /// A JSON string literal of `bytes` bytes.
    static func jsonString(bytes: Int) -> String {
        "\"" + String(repeating: "x", count: bytes - 2) + "\""
    }

    /// A CloudEvent on topic `news` whose whole `agents.Message` is `totalBytes` long.
    static func event(id: String, totalBytes: Int) -> [UInt8] {
        func build(_ padding: Int) -> [UInt8] {
            DataMessageBuilder.cloudEvent(
                id: id, topicType: "news", topicSource: "k", attributes: DataMessageBuilder.pythonAttributes(dataSchema: "Note"),
                binaryData: [UInt8](repeating: 0x61, count: padding))
        }
        var padding = totalBytes - build(0).count - 8
        var message = build(padding)
        // The length prefixes grow with the padding; settle in a few steps.
        while message.count != totalBytes {
            padding += totalBytes - message.count
            message = build(padding)
        }
        return message
    }
}
