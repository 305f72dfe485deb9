import AgentCore
import AgentHost
import AgentTestSupport
import Dispatch
import GRPCTransport
import Logging
import ProtoWire
import Synchronization
import Testing

@Suite("Metrics: a host's /metrics counts the traffic it carried")
struct MetricsTests {

    @Test("events, RPCs and answers are counted received, routed, delivered and dropped as sent")
    func trafficCounts() async throws {
        try await withHost(metricsListen: "127.0.0.1:0") { harness in
            let caller = try await harness.worker("caller")
            let alpha = try await harness.worker("alpha")
            let beta = try await harness.worker("beta")
            try await alpha.register("alpha")
            try await alpha.subscribe(id: "a", topicType: "news", agentType: "alpha")
            try await beta.register("beta")
            try await beta.subscribe(id: "b", topicType: "news", agentType: "beta")

            // 10 events to two subscribers, 3 that nobody subscribes to.
            for index in 0..<10 { try caller.publish(topicType: "news", source: "\(index)") }
            for index in 0..<3 { try caller.publish(topicType: "nobody-listens", source: "\(index)") }
            // 4 RPCs answered; one answer to a request nobody made.
            for index in 0..<4 { try caller.request(id: "r\(index)", target: AgentRef("alpha", "k")) }
            let requests = try await alpha.waitFor("4 requests") { $0.requests.count == 4 }.requests
            try alpha.respond(to: "999999")
            for request in requests { try alpha.respond(to: request.requestID) }
            for index in 0..<4 { _ = try await caller.waitForResponse(to: "r\(index)") }
            // 2 RPCs to an agent type nobody serves: answered by the host with an error.
            for index in 0..<2 { try caller.request(id: "ghost\(index)", target: AgentRef("ghost", "k")) }
            for index in 0..<2 { #expect(try await caller.waitForResponse(to: "ghost\(index)").error.contains("ghost")) }
            for worker in [alpha, beta] { _ = try await worker.waitFor("10 events") { $0.events.count == 10 } }

            let metrics = try scrape(harness.host)
            // Each RawWorker's readiness probe is a request to an agent type nobody serves.
            let probes = 3.0
            func count(_ name: String, _ labels: [String: String] = [:]) -> Double? { metrics.value(name, labels) }
            #expect(count("agentd_host_messages_received_total", ["kind": "event"]) == 13)
            #expect(count("agentd_host_messages_routed_total", ["kind": "event"]) == 10)
            #expect(count("agentd_host_messages_delivered_total", ["kind": "event"]) == 20)
            #expect(count("agentd_host_messages_dropped_total", ["kind": "event", "reason": "no_subscriber"]) == 3)
            #expect(count("agentd_host_events_unroutable_total") == 3)
            #expect(count("agentd_host_messages_received_total", ["kind": "request"]) == 6 + probes)
            #expect(count("agentd_host_messages_routed_total", ["kind": "request"]) == 4)
            #expect(count("agentd_host_messages_delivered_total", ["kind": "request"]) == 4)
            #expect(count("agentd_host_messages_dropped_total", ["kind": "request", "reason": "unknown_agent_type"]) == 2 + probes)
            #expect(count("agentd_host_messages_received_total", ["kind": "response"]) == 5)
            #expect(count("agentd_host_messages_routed_total", ["kind": "response"]) == 4)
            #expect(count("agentd_host_messages_delivered_total", ["kind": "response"]) == 4)
            #expect(count("agentd_host_messages_dropped_total", ["kind": "response", "reason": "no_pending_request"]) == 1)
            #expect(count("agentd_host_messages_unparsable_total") == 0)
            #expect(count("agentd_host_slow_consumer_drops_total") == 0)
            #expect(count("agentd_host_rpc_timeouts_total") == 0)
            #expect(count("agentd_host_workers_connected") == 3)
            #expect(count("agentd_host_rpcs_pending") == 0)
            #expect(count("agentd_host_rpc_duration_seconds_count") == 4)
            #expect((count("agentd_host_rpc_duration_seconds_sum") ?? 0) > 0)
            #expect(metrics.families["agentd_host_rpc_duration_seconds"]?.type == "histogram")
            #expect((count("agentd_process_resident_memory_bytes") ?? 0) > 1_000_000)
            // Every label is a kind or a reason: nothing per agent, key or message.
            let labels = Set(metrics.families.values.flatMap { $0.samples.flatMap(\.labels.keys) })
            #expect(labels.isSubset(of: ["kind", "reason", "le"]))

            // A worker leaves: its counts stay in the totals; it is no longer connected.
            await beta.disconnect()
            #expect(try await poll { try scrape(harness.host).value("agentd_host_workers_connected") == 2 })
            #expect(try scrape(harness.host).value("agentd_host_messages_received_total", ["kind": "event"]) == 13)
        }
    }

    @Test("pending RPCs, timeouts and a bad scrape request")
    func pendingAndTimeouts() async throws {
        var address = ""
        // A deadline that a loaded machine's pause cannot pass before the scrape below.
        try await withHost(rpcTimeout: .seconds(5), metricsListen: "127.0.0.1:0") { harness in
            let host = harness.host
            let caller = try await harness.worker("caller")
            let silent = try await harness.worker("silent")
            try await silent.register("silent")
            try caller.request(id: "1", target: AgentRef("silent", "k"))
            _ = try await silent.waitForRequest()
            #expect(try scrape(host).value("agentd_host_rpcs_pending") == 1)
            _ = try await caller.waitForResponse(to: "1")
            let metrics = try scrape(host)
            #expect(metrics.value("agentd_host_rpcs_pending") == 0)
            #expect(metrics.value("agentd_host_rpc_timeouts_total") == 1)
            #expect(metrics.value("agentd_host_rpc_duration_seconds_count") == 0)
            address = try #require(host.metricsAddress)
            #expect(try HTTPExchange.send(Array("HELLO\r\n\r\n".utf8), to: address).status == 400)
            #expect(try HTTPExchange.get("/", from: address).status == 404)
            #expect(try HTTPExchange.get("/metrics", from: address).status == 200)
        }
        // Shut down with its host.
        #expect(throws: (any Error).self) { try HTTPExchange.get("/metrics", from: address) }
    }

    /// Blocks its poller thread on the first event, so that the client stops reading.
    final class StalledReader: ClientCallHandler, @unchecked Sendable {
        // @unchecked Sendable: the semaphore is thread-safe; `blocked` is atomic.
        let gate = DispatchSemaphore(value: 0)
        let blocked = Atomic<Bool>(false)
        func call(_ call: ClientCall, didReceive message: MessageBuffer) {
            if !blocked.exchange(true, ordering: .relaxed) { gate.wait() }
        }
        func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {}
    }

    @Test("a slow consumer's drops and queue depth show, and every copy is delivered or dropped")
    func slowConsumer() async throws {
        try await withHost(queueLimits: .init(messages: 50, bytes: 1 << 30), metricsListen: "127.0.0.1:0") { harness in
            let slowID = "slow-client"
            let channel = harness.channel()
            let reader = StalledReader()
            let stream = try channel.makeStreamingCall(
                method: "/agents.AgentRpc/OpenChannel", metadata: ["client-id": slowID], handler: reader)
            defer { reader.gate.signal(); stream.cancel() }
            for (method, request) in [
                ("/agents.AgentRpc/RegisterAgent", ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: "slow")),
                ("/agents.AgentRpc/AddSubscription", ControlPlaneCodec.encodeAddSubscriptionRequest(
                    Subscription(id: "s1", agentType: "slow", kind: .topicType("flood")))),
            ] {
                _ = try await channel.unary(method: method, request: MessageBuffer(request), metadata: ["client-id": slowID])
            }
            let fast = try await harness.worker("fast")
            try await fast.register("fast")
            try await fast.subscribe(id: "f", topicType: "flood", agentType: "fast")
            let publisher = try await harness.worker("publisher")
            // 8 MB: more than the sockets and HTTP/2 windows hold, so the slow queue reaches its bound.
            let total = 2000
            let payload = String(repeating: "x", count: 4000)
            // In rounds the fast subscriber keeps up with: its own queue stays below the bound.
            let round = 20
            for start in stride(from: 0, to: total, by: round) {
                for index in start..<(start + round) {
                    try publisher.publish(topicType: "flood", source: "\(index)", json: "\"\(payload)\"")
                }
                _ = try await fast.waitFor("events to \(start + round)") { $0.events.count == start + round }
            }
            try await fast.catchUp(with: publisher, agentType: "fast")

            let metrics = try scrape(harness.host)
            let dropped = try #require(harness.host.droppedEvents()[slowID])
            #expect(dropped > 0)
            #expect(metrics.value("agentd_host_slow_consumer_drops_total") == Double(dropped))
            #expect(metrics.value("agentd_host_messages_dropped_total", ["kind": "event", "reason": "queue_full"]) == Double(dropped))
            let delivered = try #require(metrics.value("agentd_host_messages_delivered_total", ["kind": "event"]))
            #expect(delivered + Double(dropped) == Double(2 * total))
            let queued = try #require(harness.host.queuedMessages()[slowID])
            #expect(metrics.value("agentd_host_outbound_queue_messages_max") == Double(queued))
            #expect((metrics.value("agentd_host_outbound_queue_messages") ?? -1) >= Double(queued))
            #expect(queued <= 51)
        }
    }

    @Test("without metrics_listen a host serves no metrics")
    func off() async throws {
        try await withHost { harness in
            #expect(harness.host.metricsAddress == nil)
            #expect(harness.host.metricsPort == nil)
        }
    }
}
