import AgentCore
import AgentHost
import AgentRuntime
import AgentTestSupport
import ProtoWire
import Foundation
import GRPCTransport
import Logging
import Synchronization
import Testing

@Suite("Every queue is bounded; nothing waits forever")
struct BoundedQueueTests {
    @Test("a handler that never finishes is answered with an error after the deadline; a full mailbox refuses at once")
    func handlerDeadlineAndMailbox() async throws {
        try await withRuntime(plugins: [("versioned.so", "VersionedPluginV1")], mailboxLimit: 5,
                              handlerTimeout: .seconds(3)) { harness in
            let client = harness.client
            let started = ContinuousClock.now
            let busy = AgentID(type: "versioned", key: "busy")
            let never = client.start(Array("{}".utf8), messageType: "Never", to: busy)
            // The agent is stuck in `Never`: five more messages may wait (four, if `Never`
            // itself still waits for a worker), the rest are refused at once. (The deadline is
            // 3 s so that all ten reach the mailbox before it frees the agent, on a loaded
            // machine too.)
            let gets = (0..<10).map { _ in client.start(Array("{}".utf8), messageType: "Get", to: busy) }
            var answered = 0
            var refused = 0
            for task in gets {
                switch await task.result {
                case .success(let response):
                    #expect(String(decoding: response.payload, as: UTF8.self).contains(#""version": 1"#))
                    answered += 1
                case .failure(let error):
                    #expect("\(error)".contains("overloaded"), "\(error)")
                    refused += 1
                }
            }
            #expect((4...5).contains(answered) && answered + refused == 10, "answered \(answered), refused \(refused)")
            let timedOut = await #expect(throws: RuntimeError.self) { _ = try await never.value }
            #expect(timedOut?.message.contains("did not finish within") == true)
            // The waiting ones were answered only after the deadline freed the agent.
            #expect(ContinuousClock.now - started >= .seconds(3))
            #expect(!harness.log.records { $0.message == "mailbox full: message refused" }.isEmpty)
        }
    }

    /// Records what a client's stream delivers; blocks its poller thread (so the client stops
    /// reading from the socket) until released.
    final class SlowReader: ClientCallHandler, @unchecked Sendable {
        // @unchecked Sendable: `received` is atomic; the semaphore is thread-safe.
        let gate = DispatchSemaphore(value: 0)
        let received = Atomic<Int>(0)
        let blocked = Atomic<Bool>(false)

        func call(_ call: ClientCall, didReceive message: MessageBuffer) {
            let isEvent = message.withUnsafeBytes { bytes -> Bool in
                if case .event = try? Envelope.parse(bytes) { return true }
                return false
            }
            guard isEvent else { return }
            received.add(1, ordering: .relaxed)
            if !blocked.exchange(true, ordering: .relaxed) { gate.wait() }
        }

        func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {}
    }

    @Test("a subscriber that stops reading cannot grow the host's memory: its queue stays bounded, drops are counted, others get everything")
    func slowSubscriber() async throws {
        let host = try AgentHost(
            configuration: .init(listen: "127.0.0.1:0", queueLimits: .init(messages: 1000, bytes: 1 << 30)),
            logger: Logger(label: "test.host"))
        let address = "127.0.0.1:\(host.port)"
        // The slow subscriber: a raw stream that blocks on its first event.
        let slowID = "slow-client"
        let channel = Channel(configuration: .init(target: address))
        let reader = SlowReader()
        let stream = try channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenChannel", metadata: ["client-id": slowID], handler: reader)
        for (method, request) in [
            ("/agents.AgentRpc/RegisterAgent", ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: "slow")),
            ("/agents.AgentRpc/AddSubscription", ControlPlaneCodec.encodeAddSubscriptionRequest(
                Subscription(id: "s1", agentType: "slow", kind: .topicType("flood")))),
        ] {
            _ = try await channel.unary(method: method, request: MessageBuffer(request), metadata: ["client-id": slowID])
        }
        let fast = try WorkerClient(address: address)
        try await fast.subscribe(topicType: "flood")
        let events = fast.events()
        let publisher = try WorkerClient(address: address)
        // 40 MB in all: more than the socket buffers and HTTP/2 windows between host and the
        // slow subscriber can absorb, so its queue at the host must reach the bound.
        let total = 10_000
        let payload = Array(repeating: UInt8(ascii: "x"), count: 4000)
        // Published in rounds of 400 that the fast subscriber keeps up with (its own queue
        // never nears the bound), while the slow one reads nothing at all.
        var iterator = events.makeAsyncIterator()
        var got = 0
        for round in 0..<(total / 400) {
            for index in 0..<400 {
                try publisher.publish(payload, messageType: "Flood", to: TopicID(type: "flood", source: "\(round)-\(index)"))
            }
            for _ in 0..<400 {
                guard await iterator.next() != nil else { break }
                got += 1
            }
        }
        #expect(got == total, "the fast subscriber got every event")
        let queued = host.queuedMessages()[slowID] ?? -1
        // (The host may still be handing the last events to the slow subscriber's queue after the
        // fast one got them: the drop count is read again below.)
        let dropped = host.droppedEvents()[slowID] ?? -1
        #expect(queued <= 1001, "the slow subscriber's queue is bounded (the limit, plus the one send in flight)")
        #expect(host.droppedEvents().filter { $0.key != slowID }.values.allSatisfy { $0 == 0 }, "nobody else lost anything")
        #expect(dropped > 0, "events beyond the bound are dropped and counted")
        // Released, it receives what was queued for it: delivered + dropped = published.
        reader.gate.signal()
        // (The drop count is the host's, which it can only be asked for.)
        func accounted() -> Int { reader.received.load(ordering: .relaxed) + (host.droppedEvents()[slowID] ?? 0) }
        _ = await poll(timeout: .seconds(20)) { accounted() >= total }
        #expect(accounted() == total,
                "received \(reader.received.load(ordering: .relaxed)), dropped \(dropped), now dropped \(host.droppedEvents()[slowID] ?? -1), queued \(host.queuedMessages()[slowID] ?? -1)")
        stream.cancel()
        await fast.close()
        await publisher.close()
        await channel.shutdown()
        await host.shutdown()
    }

    @Test("a publisher bursting at a host that does not read keeps at most 10,000 publishes waiting; the rest are refused, not queued")
    func publisherBurstIsBounded() async throws {
        // A "host" that accepts the connection and never reads from it: nothing the worker
        // writes can leave, as with a host that is stuck or far slower than the publisher.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(listener, pointer, length) == 0 && listen(listener, 4) == 0 && getsockname(listener, pointer, &length) == 0
            }
        }
        #expect(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))
        let client = try WorkerClient(address: "127.0.0.1:\(port)")
        let payload = [UInt8](repeating: 0x61, count: 1024)
        var accepted = 0
        var refusal: OutboundQueueFull?
        for _ in 0..<30_000 {
            do {
                try client.publish(payload, messageType: "Burst", to: TopicID(type: "burst", source: "s"))
                accepted += 1
            } catch let full as OutboundQueueFull {
                refusal = full
                break
            }
        }
        // 10,000 wait in the queue (plus at most the one the transport holds).
        #expect((10_000...10_001).contains(accepted))
        #expect(client.outboundQueued <= 10_001)
        #expect(refusal?.description.contains("publish refused") == true)
        // Still full: refused again at once, nothing added.
        #expect(throws: OutboundQueueFull.self) {
            try client.publish(payload, messageType: "Burst", to: TopicID(type: "burst", source: "s"))
        }
        #expect(client.outboundQueued <= 10_001)
        // Back-pressure instead of refusal: the waiting publish gives up after its timeout.
        await #expect(throws: OutboundQueueFull.self) {
            try await client.publish(payload, messageType: "Burst", to: TopicID(type: "burst", source: "s"),
                                     waitingUpTo: .milliseconds(50))
        }
        await client.close()
    }
}
