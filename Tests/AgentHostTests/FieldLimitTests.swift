import AgentCore
import AgentTestSupport
import Foundation
import GRPCTransport
import ProtoWire
import Testing

@Suite("Ids, types, keys and topics over their documented length are refused, naming the field")
struct FieldLimitTests {
    static func text(_ count: Int, _ letter: Character = "a") -> String { String(repeating: letter, count: count) }

    @Test("RegisterAgent: an agent type at the limit is served, one byte over is INVALID_ARGUMENT naming the field")
    func agentType() async throws {
        try await withHost { harness in
            let worker = try await harness.worker("registrar")
            try await worker.register(Self.text(FieldLimits.agentType))
            let error = await #expect(throws: TransportError.self) { try await worker.register(Self.text(FieldLimits.agentType + 1, "b")) }
            #expect(error?.status.code == .invalidArgument)
            #expect(error?.status.message.contains("RegisterAgentTypeRequest.type is 257 bytes long, over the host's limit of 256 bytes") == true,
                    "\(error?.status.message ?? "")")
        }
    }

    static let subscriptionCases: [(String, Subscription)] = [
        ("subscription.id", Subscription(id: text(FieldLimits.subscriptionID + 1), agentType: "a", kind: .topicType("t"))),
        ("subscription.agent_type", Subscription(id: "s", agentType: text(FieldLimits.agentType + 1), kind: .topicType("t"))),
        ("subscription.topic_type", Subscription(id: "s", agentType: "a", kind: .topicType(text(FieldLimits.topicType + 1)))),
        ("subscription.topic_type_prefix", Subscription(id: "s", agentType: "a", kind: .topicTypePrefix(text(512 * 1024)))),
    ]

    @Test("AddSubscription: each field over its limit is INVALID_ARGUMENT naming it", arguments: subscriptionCases)
    func subscription(field: String, subscription: Subscription) async throws {
        try await withHost { harness in
            let worker = try await harness.worker("subscriber")
            let error = await #expect(throws: TransportError.self) {
                try await worker.unary("AddSubscription", ControlPlaneCodec.encodeAddSubscriptionRequest(subscription))
            }
            #expect(error?.status.code == .invalidArgument)
            #expect(error?.status.message.contains("\(field) is ") == true, "\(error?.status.message ?? "")")
            #expect(try await worker.subscriptions().isEmpty)
        }
    }

    @Test("a client-id over 256 bytes is INVALID_ARGUMENT on streams and unary calls", arguments: ["OpenChannel", "RegisterAgent"])
    func clientID(method: String) async throws {
        try await withHost { harness in
            let metadata: Metadata = ["client-id": Self.text(FieldLimits.clientID + 1)]
            let status: Status?
            if method == "OpenChannel" {
                let recorder = DataStreamRecorder()
                _ = try harness.channel().makeStreamingCall(
                    method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: recorder)
                status = await recorder.log.wait { $0.status != nil }?.status
            } else {
                let error = await #expect(throws: TransportError.self) {
                    _ = try await harness.channel().unary(
                        method: "/agents.AgentRpc/RegisterAgent",
                        request: MessageBuffer(ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: "a")),
                        metadata: metadata, waitForReady: true)
                }
                status = error?.status
            }
            #expect(status?.code == .invalidArgument)
            #expect(status?.message.contains("client-id metadata is 257 bytes long") == true, "\(status?.message ?? "")")
        }
    }

    @Test("data channel: a request over a limit is answered with an error naming the field; an event over one is dropped, counted and logged naming the worker")
    func dataChannel() async throws {
        let log = LogCapture()
        try await withHost(metricsListen: "127.0.0.1:0", logger: log.logger()) { harness in
            let caller = try await harness.worker("caller")
            let listener = try await harness.worker("listener")
            try await listener.register("listen")
            try await listener.subscribe(id: "all", topicTypePrefix: "", agentType: "listen")

            try caller.request(id: "long-key", target: AgentRef("listen", Self.text(FieldLimits.agentKey + 1)))
            let answer = try await caller.waitForResponse(to: "long-key")
            #expect(answer.error.contains("RpcRequest.target.key is 1025 bytes long"), "\(answer.error)")

            try caller.publish(topicType: Self.text(FieldLimits.topicType + 1), source: "s")
            try caller.publish(topicType: "fine", source: Self.text(FieldLimits.topicSource + 1))
            let sent = try caller.publish(topicType: "fine", source: "s")
            let received = try await listener.catchUp(with: caller, agentType: "listen")
            #expect(received.events.map(\.bytes) == [sent], "only the event within the limits arrives")
            #expect(received.requests.allSatisfy { $0.target?.key.utf8.count ?? 0 <= FieldLimits.agentKey })

            let line = try #require(await log.first { $0.message == "message with a field over the host's length limit refused" })
            #expect(line.metadata["client.id"] == caller.clientID)
            #expect(line.metadata["field"] == "RpcRequest.target.key")
            let address = try #require(harness.host.metricsAddress)
            let metrics = try PrometheusExposition(parsing: try HTTPExchange.get("/metrics", from: address).text)
            #expect(metrics.value("agentd_host_messages_dropped_total", ["kind": "event", "reason": "field_too_long"]) == 2)
            #expect(metrics.value("agentd_host_messages_dropped_total", ["kind": "request", "reason": "field_too_long"]) == 1)
        }
    }
}
