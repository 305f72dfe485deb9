import AgentTestSupport
import Foundation
import GRPCTransport
import Testing

@Suite("Deadlines, cancellation, vanishing peers and shutdown")
struct FailureTests {
    @Test("a call past its deadline ends with DEADLINE_EXCEEDED on both sides")
    func deadline() async throws {
        try await withEchoServer { router, _, channel in
            let error = await #expect(throws: TransportError.self) {
                _ = try await channel.unary(
                    method: "/test.Echo/Silent", request: MessageBuffer(text: "x"), deadline: .after(.milliseconds(200)))
            }
            #expect(error?.status.code == .deadlineExceeded)
            let ended = await router.log.wait { !$0.ended.isEmpty }
            #expect(ended?.ended.first?.cancelled == true)
        }
    }

    @Test("a client's cancel ends the server's call as cancelled and the client's with CANCELLED")
    func cancellation() async throws {
        try await withEchoServer { router, _, channel in
            let collector = StreamCollector()
            let call = try channel.makeStreamingCall(method: "/test.Echo/Silent", handler: collector)
            #expect(call.send(MessageBuffer(text: "hello")))
            _ = await router.log.wait { $0.received == 1 }
            call.cancel()
            let log = await collector.log.wait { $0.status != nil }
            #expect(log?.status?.code == .cancelled)
            let ended = await router.log.wait { !$0.ended.isEmpty }
            #expect(ended?.ended.first?.cancelled == true)
        }
    }

    @Test("many concurrent streams each get all of their own messages back")
    func manyConcurrentStreams() async throws {
        try await withEchoServer { _, _, channel in
            let streams = 64
            let perStream = 300
            var calls: [(ClientCall, StreamCollector)] = []
            for stream in 0..<streams {
                let collector = StreamCollector()
                let call = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
                calls.append((call, collector))
                _ = stream
            }
            for round in 0..<perStream {
                for (stream, (call, _)) in calls.enumerated() {
                    call.send(MessageBuffer(text: "\(stream):\(round)"))
                }
            }
            for (call, _) in calls { call.halfClose() }
            for (stream, (_, collector)) in calls.enumerated() {
                let log = try #require(await collector.log.wait(timeout: .seconds(30)) { $0.status != nil })
                #expect(log.status == .ok)
                #expect(log.messages.map { String(decoding: $0, as: UTF8.self) } == (0..<perStream).map { "\(stream):\($0)" })
            }
        }
    }

    @Test("a client that vanishes mid-stream ends the server's call as cancelled; the server keeps serving")
    func clientVanishes() async throws {
        try await withEchoServer { router, server, channel in
            let proxy = try TCPProxy(upstreamPort: server.port)
            let doomed = Channel(configuration: .init(target: "127.0.0.1:\(proxy.port)"))
            let collector = StreamCollector()
            let call = try doomed.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
            call.send(MessageBuffer(text: "one"))
            _ = await collector.log.wait { $0.messages.count == 1 }
            proxy.cut()
            // A loaded machine under AddressSanitizer once took longer than the default 10 s.
            let ended = await router.log.wait(timeout: .seconds(30)) { !$0.ended.isEmpty }
            #expect(ended?.ended.first?.cancelled == true)
            let log = await collector.log.wait { $0.status != nil }
            #expect(log?.status?.code == .unavailable || log?.status?.code == .cancelled || log?.status?.code == .internal)
            await doomed.shutdown()
            let response = try await channel.unary(method: "/test.Echo/Unary", request: MessageBuffer(text: "alive"))
            #expect(response.text == "alive")
        }
    }

    @Test("a server that vanishes mid-stream ends the client's call with UNAVAILABLE")
    func serverVanishes() async throws {
        try await withEchoServer { _, server, _ in
            let proxy = try TCPProxy(upstreamPort: server.port)
            let channel = Channel(configuration: .init(target: "127.0.0.1:\(proxy.port)"))
            let collector = StreamCollector()
            let call = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
            call.send(MessageBuffer(text: "one"))
            _ = await collector.log.wait { $0.messages.count == 1 }
            proxy.cut()
            let log = await collector.log.wait { $0.status != nil }
            #expect(log?.status?.code == .unavailable)
            await channel.shutdown()
        }
    }

    @Test("shutdown with calls in flight ends every call and returns")
    func shutdownWithCallsInFlight() async throws {
        let router = EchoRouter()
        let server = try Server(configuration: .init(address: "127.0.0.1:0"), router: router)
        let channel = Channel(configuration: .init(target: "127.0.0.1:\(server.port)"))
        var collectors: [StreamCollector] = []
        for _ in 0..<20 {
            let collector = StreamCollector()
            let call = try channel.makeStreamingCall(method: "/test.Echo/Silent", handler: collector)
            call.send(MessageBuffer(text: "x"))
            collectors.append(collector)
        }
        let unary = AsyncCondition<Result<MessageBuffer, TransportError>?>(nil)
        channel.unary(method: "/test.Echo/Silent", request: MessageBuffer(text: "u")) { result in
            unary.mutate { $0 = result }
        }
        _ = await router.log.wait { $0.received == 21 }
        await server.shutdown(gracePeriod: .milliseconds(100))
        #expect(router.log.value.ended.count == 21)
        #expect(router.log.value.ended.allSatisfy { $0.cancelled })
        for collector in collectors {
            let log = await collector.log.wait { $0.status != nil }
            #expect(log?.status != nil && log?.status?.code != .ok)
        }
        let result = await unary.wait { $0 != nil }
        if case .success = result?! { Issue.record("the pending unary call succeeded after shutdown") }
        await channel.shutdown()
        // Calls on a shut-down channel fail at once.
        #expect(throws: TransportError.self) {
            _ = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: StreamCollector())
        }
    }

    @Test("a graceful shutdown lets a call that finishes within the grace period complete")
    func gracefulShutdown() async throws {
        let router = EchoRouter()
        let server = try Server(configuration: .init(address: "127.0.0.1:0"), router: router)
        let channel = Channel(configuration: .init(target: "127.0.0.1:\(server.port)"))
        let collector = StreamCollector()
        let call = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
        call.send(MessageBuffer(text: "a"))
        _ = await collector.log.wait { $0.messages.count == 1 }
        async let shutdown: Void = server.shutdown(gracePeriod: .seconds(10))
        call.halfClose()
        await shutdown
        let log = await collector.log.wait { $0.status != nil }
        #expect(log?.status == .ok)
        await channel.shutdown()
    }

    @Test("listening on a taken port fails with an error naming the address")
    func bindFailure() async throws {
        let first = try Server(configuration: .init(address: "127.0.0.1:0"), router: EchoRouter())
        let error = #expect(throws: TransportError.self) {
            _ = try Server(configuration: .init(address: "127.0.0.1:\(first.port)"), router: EchoRouter())
        }
        #expect(error?.code == .bindFailed)
        #expect(error?.message.contains("127.0.0.1:\(first.port)") == true)
        await first.shutdown()
    }
}
