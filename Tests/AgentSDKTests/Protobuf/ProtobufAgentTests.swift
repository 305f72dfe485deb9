import AgentPluginABI
import AgentSDK
import AgentSDKProtobuf
import Foundation
import SwiftProtobuf
import Testing

/// protobuf's well-known types stand in for generated messages: `google.protobuf.SourceContext`
/// (`{file_name}`) as the request, `google.protobuf.EnumValue` (`{name, number}`) as the answer.
private typealias Request = Google_Protobuf_SourceContext
private typealias Answer = Google_Protobuf_EnumValue

/// Asks `target` with a protobuf RPC and returns what came back, as JSON (for the send tests).
private struct Ask: AgentMessage {
    var target: String
    var fileName: String
}

private struct Told: AgentMessage {
    var name: String
    var number: Int32
}

/// Answers a SourceContext with its file name upper-cased and counted; publishes the same for
/// an event; relays an `Ask` as a protobuf RPC.
private final class Measurer: Agent {
    static let type = "measurer"

    init(context: AgentContext) {}

    static func handlers(_ registry: inout HandlerRegistry<Measurer>) {
        registry.onRPC(Request.self) { _, request, _ in
            Answer.with {
                $0.name = request.fileName.uppercased()
                $0.number = Int32(request.fileName.count)
            }
        }
        registry.on(Request.self) { _, request, context in
            let answer = Answer.with { $0.name = request.fileName.uppercased() }
            try context.publish(answer, to: TopicID(type: "counts", source: context.topic?.source ?? ""))
        }
        registry.onRPC(Ask.self) { _, ask, context in
            let answer = try await context.send(
                Request.with { $0.fileName = ask.fileName }, to: AgentID(type: ask.target, key: "k"), expecting: Answer.self)
            return Told(name: answer.name, number: answer.number)
        }
    }
}

@Suite("AgentSDKProtobuf: swift-protobuf messages in handlers, publish and send")
struct ProtobufAgentTests {
    private static func measurer(_ runtime: FakeRuntime = FakeRuntime()) throws -> FakeAgent {
        let plugin = try #require(runtime.load(Plugin(name: "p", version: "1", agents: [Measurer.self])))
        return try plugin.create(AgentID(type: "measurer", key: "k"))
    }

    private static func bytes(_ message: some SwiftProtobuf.Message) throws -> [UInt8] {
        try message.serializedBytes()
    }

    @Test("an RPC in protobuf is read under the full name and answered in protobuf")
    func binaryRPC() async throws {
        let agent = try Self.measurer()
        defer { agent.destroy() }
        let answer = try await agent.handle(
            "google.protobuf.SourceContext", payload: try Self.bytes(Request.with { $0.fileName = "hello" }), rpc: true,
            contentType: "application/x-protobuf")
        guard case .binaryReply(let messageType, let contentType, let payload) = answer else {
            Issue.record("expected a protobuf reply, got \(answer)")
            return
        }
        #expect(messageType == "google.protobuf.EnumValue")
        #expect(contentType == "application/x-protobuf")
        #expect(try Answer(serializedBytes: payload) == Answer.with { $0.name = "HELLO"; $0.number = 5 })
    }

    @Test("an RPC in protobuf's JSON mapping (AutoGen's send_message) is answered in it")
    func jsonRPC() async throws {
        let agent = try Self.measurer()
        defer { agent.destroy() }
        // json_format writes lowerCamelCase names and reads the .proto's too.
        for request in [#"{"fileName": "hello"}"#, #"{"file_name": "hello"}"#] {
            let answer = try await agent.handle("google.protobuf.SourceContext", json: request, rpc: true)
            guard case .reply(let messageType, let contentType, let json) = answer else {
                Issue.record("expected a JSON reply, got \(answer)")
                return
            }
            #expect(messageType == "google.protobuf.EnumValue")
            #expect(contentType == "application/json")
            #expect(try Answer(jsonString: json) == Answer.with { $0.name = "HELLO"; $0.number = 5 })
            #expect(json.contains(#""name":"HELLO""#))
        }
    }

    @Test("an empty payload is the message with every field at its default, as protobuf says")
    func emptyMessage() async throws {
        let agent = try Self.measurer()
        defer { agent.destroy() }
        let answer = try await agent.handle(
            "google.protobuf.SourceContext", payload: [], rpc: true, contentType: "application/x-protobuf")
        // The answer has only defaults, so it is empty too.
        #expect(answer == .binaryReply(
            messageType: "google.protobuf.EnumValue", contentType: "application/x-protobuf", payload: []))
    }

    @Test("bytes that are not the message get a clear error answer, and nothing logs a refusal")
    func malformed() async throws {
        let runtime = FakeRuntime()
        let agent = try Self.measurer(runtime)
        defer { agent.destroy() }
        // Field 1 (file_name) says 10 bytes follow; 2 do.
        let truncated = try await agent.handle(
            "google.protobuf.SourceContext", payload: [0x0A, 0x0A, 0x61, 0x62], rpc: true,
            contentType: "application/x-protobuf")
        #expect(truncated == .fail(
            status: AGENTD_INVALID_ARGUMENT.rawValue,
            message: "cannot decode google.protobuf.SourceContext from its protobuf payload (4 bytes): "
                + "the bytes end inside a field"))
        let unknown = try await agent.handle("google.protobuf.SourceContext", json: #"{"file": "x"}"#, rpc: true)
        #expect(unknown == .fail(
            status: AGENTD_INVALID_ARGUMENT.rawValue,
            message: "cannot decode google.protobuf.SourceContext from its JSON payload (protobuf's JSON mapping): "
                + #"unknown field "file" (Google_Protobuf_SourceContext has no such field) (payload: {"file": "x"})"#))
        let broken = try await agent.handle("google.protobuf.SourceContext", json: "{oops", rpc: true)
        guard case .fail(AGENTD_INVALID_ARGUMENT.rawValue, let message) = broken else {
            Issue.record("expected an invalid-argument failure, got \(broken)")
            return
        }
        #expect(message.hasPrefix("cannot decode google.protobuf.SourceContext from its JSON payload"))
        #expect(message.hasSuffix("(payload: {oops)"))
        #expect(runtime.logs.filter { $0.level == AGENTD_LOG_ERROR.rawValue }.map(\.text) == [])
    }

    @Test("another content type is refused at once, naming the ones the handler reads")
    func otherContentType() async throws {
        let agent = try Self.measurer()
        defer { agent.destroy() }
        let (status, call) = agent.deliver(
            "google.protobuf.SourceContext", payload: Array("hello".utf8), rpc: true, contentType: "text/plain")
        #expect(status == AGENTD_INVALID_ARGUMENT)
        #expect(call.answers == [.fail(
            status: AGENTD_INVALID_ARGUMENT.rawValue,
            message: "google.protobuf.SourceContext arrived as text/plain: agent type measurer reads it only as "
                + "application/x-protobuf or application/json")])
        // A JSON message's handler reads JSON only.
        let (jsonStatus, jsonCall) = agent.deliver(
            "Ask", payload: [0x0A, 0x00], rpc: true, contentType: "application/x-protobuf")
        #expect(jsonStatus == AGENTD_INVALID_ARGUMENT)
        #expect(jsonCall.answers == [.fail(
            status: AGENTD_INVALID_ARGUMENT.rawValue,
            message: "Ask arrived as application/x-protobuf: agent type measurer reads it only as application/json")])
    }

    @Test("an event handler publishes a protobuf message: full name, application/x-protobuf, its bytes")
    func publish() async throws {
        let runtime = FakeRuntime()
        let agent = try Self.measurer(runtime)
        defer { agent.destroy() }
        let answer = try await agent.handle(
            "google.protobuf.SourceContext", payload: try Self.bytes(Request.with { $0.fileName = "abc" }), rpc: false,
            topic: TopicID(type: "files", source: "s1"), contentType: "application/x-protobuf")
        #expect(answer == .reply(messageType: "", contentType: "", json: ""))
        #expect(runtime.publications == [FakeRuntime.Publication(
            from: AgentID(type: "measurer", key: "k"), topic: TopicID(type: "counts", source: "s1"),
            messageType: "google.protobuf.EnumValue", contentType: "application/x-protobuf",
            payload: try Self.bytes(Answer.with { $0.name = "ABC" }))])
    }

    @Test("send writes protobuf and reads a protobuf or JSON-mapped answer")
    func send() async throws {
        let runtime = FakeRuntime { request in
            guard request.contentType == "application/x-protobuf",
                  let asked = try? Request(serializedBytes: request.payload)
            else { return .error(AGENTD_INVALID_ARGUMENT.rawValue, "not protobuf: \(request.contentType)") }
            let answer = Answer.with { $0.name = "\(request.target.type):\(asked.fileName)"; $0.number = 7 }
            // "json-speaker" answers as an AutoGen Python agent does: JSON, whatever it was sent.
            if request.target.type == "json-speaker" {
                return .answer(messageType: "google.protobuf.EnumValue", json: try! answer.jsonString())
            }
            return .binaryAnswer(
                messageType: "google.protobuf.EnumValue", contentType: "application/x-protobuf",
                payload: try! answer.serializedBytes())
        }
        let agent = try Self.measurer(runtime)
        defer { agent.destroy() }
        for target in ["proto-speaker", "json-speaker"] {
            let answer = try await agent.handle("Ask", json: #"{"target": "\#(target)", "fileName": "f"}"#, rpc: true)
            guard case .reply("Told", "application/json", let json) = answer else {
                Issue.record("expected a Told, got \(answer)")
                continue
            }
            let told = try JSONDecoder().decode(Told.self, from: Data(json.utf8))
            #expect(told.name == "\(target):f" && told.number == 7)
        }
        let request = try #require(runtime.requests.first)
        #expect(request.messageType == "google.protobuf.SourceContext")
        #expect(request.contentType == "application/x-protobuf")
    }

    @Test("an answer send cannot read is an error naming what came and what was expected")
    func sendUnreadableAnswer() async throws {
        let runtime = FakeRuntime { _ in
            .binaryAnswer(messageType: "google.protobuf.EnumValue", contentType: "text/plain", payload: Array("x".utf8))
        }
        let agent = try Self.measurer(runtime)
        defer { agent.destroy() }
        let answer = try await agent.handle("Ask", json: #"{"target": "t", "fileName": "f"}"#, rpc: true)
        #expect(answer == .fail(
            status: AGENTD_INVALID_ARGUMENT.rawValue,
            message: "t/k answered google.protobuf.SourceContext with text/plain, but google.protobuf.EnumValue is "
                + "read only as application/x-protobuf or application/json"))
    }
}
