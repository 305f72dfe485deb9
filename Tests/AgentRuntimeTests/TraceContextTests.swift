import AgentCore
import AgentRuntime
import Foundation
import Testing

/// W3C trace context through agents: an RPC's `traceparent` reaches the handler (as a new span
/// of the same trace) and everything the handler sends carries it on.
@Suite("Trace context: a trace continues through agents")
struct TraceContextTests {
    static let incoming = TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", tracestate: "vendor=1")!

    private func json(_ text: String) throws -> [String: String] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String] ?? [:]
    }

    @Test("the handler runs in a new span of the caller's trace; its RPCs carry the trace on")
    func handlerSpanAndRelay() async throws {
        try await withRuntime(plugins: DispatchTests.plugins) { harness in
            let answer = try await harness.client.send(
                Array("{}".utf8), messageType: "Anything", to: AgentID(type: "tracer", key: "t"), trace: Self.incoming)
            let seen = try json(String(decoding: answer.payload, as: UTF8.self))
            let handler = try #require(TraceContext(traceparent: seen["traceparent"] ?? "", tracestate: seen["tracestate"] ?? ""))
            #expect(handler.traceID == Self.incoming.traceID)
            #expect(handler.spanID != Self.incoming.spanID)
            #expect(handler.flags == "01")
            #expect(handler.state == "vendor=1")

            // Through an agent that calls another: the second handler's span is in the same
            // trace, and differs from both spans before it.
            let relayed = try await harness.client.send(
                Array(#"{"to_type": "tracer", "to_key": "u", "text": "x"}"#.utf8), messageType: "Relay",
                to: AgentID(type: "relay", key: "r"), trace: Self.incoming)
            let second = try json(String(decoding: relayed.payload, as: UTF8.self))
            let far = try #require(TraceContext(traceparent: second["traceparent"] ?? ""))
            #expect(far.traceID == Self.incoming.traceID)
            #expect(far.spanID != Self.incoming.spanID)

            // Without a trace, none is made up.
            let plain = try await harness.client.send(Array("{}".utf8), messageType: "Anything", to: AgentID(type: "tracer", key: "t"))
            #expect(try json(String(decoding: plain.payload, as: UTF8.self))["traceparent"] == "")
        }
    }

    @Test("an event a traced handler publishes carries the trace in its attributes, as AutoGen reads it")
    func publishCarriesTrace() async throws {
        try await withRuntime(plugins: DispatchTests.plugins) { harness in
            try await harness.client.subscribe(topicType: "notes")
            let events = harness.client.events()
            _ = try await harness.client.send(
                Array(#"{"topic": "notes", "source": "s", "text": "hi"}"#.utf8), messageType: "Publish",
                to: AgentID(type: "publisher", key: "p"), trace: Self.incoming)
            var iterator = events.makeAsyncIterator()
            let event = try #require(await iterator.next())
            let carried = try #require(event.traceparent.flatMap { TraceContext(traceparent: $0) })
            #expect(carried.traceID == Self.incoming.traceID)
            #expect(carried.spanID != Self.incoming.spanID)
            // An untraced publish carries none.
            _ = try await harness.client.send(
                Array(#"{"topic": "notes", "source": "s", "text": "plain"}"#.utf8), messageType: "Publish",
                to: AgentID(type: "publisher", key: "p"))
            let plain = try #require(await iterator.next())
            #expect(plain.traceparent == nil)
        }
    }

    @Test("traceparent parsing follows the W3C rules")
    func parsing() {
        #expect(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") != nil)
        #expect(TraceContext(traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01") == nil, "zero trace id")
        #expect(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01") == nil, "zero span id")
        #expect(TraceContext(traceparent: "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01") == nil, "upper case")
        #expect(TraceContext(traceparent: "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == nil, "version ff")
        #expect(TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7") == nil)
        #expect(TraceContext(traceparent: "garbage") == nil)
        let child = TraceContext(traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")!.child()
        #expect(child.traceparent.count == 55)
        #expect(TraceContext(traceparent: child.traceparent) != nil)
    }
}
