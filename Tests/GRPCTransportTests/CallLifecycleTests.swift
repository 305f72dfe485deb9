import Foundation
import GRPCTransport
import Testing

@Suite("A call's whole life over real sockets")
struct CallLifecycleTests {
    @Test("a unary call carries the request there and the response back")
    func unaryRoundTrip() async throws {
        try await withEchoServer { _, _, channel in
            let response = try await channel.unary(method: "/test.Echo/Unary", request: MessageBuffer(text: "ping"))
            #expect(response.text == "ping")
        }
    }

    @Test("request metadata reaches the server")
    func metadataReachesServer() async throws {
        try await withEchoServer { router, _, channel in
            let response = try await channel.unary(
                method: "/test.Echo/Metadata", request: MessageBuffer(text: ""),
                metadata: ["client-id": "abc-123", "X-Echo": "hello"])
            #expect(response.text == "hello")
            #expect(router.log.value.metadata.first?["client-id"] == "abc-123")
        }
    }

    @Test("an empty message round-trips")
    func emptyMessage() async throws {
        try await withEchoServer { _, _, channel in
            let response = try await channel.unary(method: "/test.Echo/Unary", request: MessageBuffer([UInt8]()))
            #expect(response.count == 0)
        }
    }

    @Test("a 1 MiB message round-trips byte for byte")
    func largeMessage() async throws {
        try await withEchoServer { _, _, channel in
            let bytes = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            let response = try await channel.unary(method: "/test.Echo/Unary", request: MessageBuffer(bytes))
            #expect(response.bytes == bytes)
        }
    }

    @Test("a server's status code and message reach the client")
    func statusReachesClient() async throws {
        try await withEchoServer { _, _, channel in
            let error = await #expect(throws: TransportError.self) {
                _ = try await channel.unary(method: "/test.Echo/Fail", request: MessageBuffer(text: "agent type 'x' is taken"))
            }
            #expect(error?.status == Status(.invalidArgument, "agent type 'x' is taken"))
        }
    }

    @Test("an unknown method is UNIMPLEMENTED and names the method")
    func unknownMethod() async throws {
        try await withEchoServer { _, _, channel in
            let error = await #expect(throws: TransportError.self) {
                _ = try await channel.unary(method: "/test.Echo/Nope", request: MessageBuffer(text: ""))
            }
            #expect(error?.status.code == .unimplemented)
            #expect(error?.status.message.contains("/test.Echo/Nope") == true)
        }
    }

    @Test("a message over the server's limit is refused with RESOURCE_EXHAUSTED, and the server keeps serving")
    func oversizedMessage() async throws {
        try await withEchoServer(maxReceiveMessageBytes: 1024) { _, _, channel in
            let error = await #expect(throws: TransportError.self) {
                _ = try await channel.unary(method: "/test.Echo/Unary", request: MessageBuffer([UInt8](repeating: 1, count: 4096)))
            }
            #expect(error?.status.code == .resourceExhausted)
            let small = try await channel.unary(method: "/test.Echo/Unary", request: MessageBuffer(text: "still here"))
            #expect(small.text == "still here")
        }
    }

    @Test("a bidirectional stream delivers every message in order, then the status")
    func streamInOrder() async throws {
        try await withEchoServer { router, _, channel in
            let collector = StreamCollector()
            let call = try channel.makeStreamingCall(method: "/test.Echo/Stream", handler: collector)
            let count = 2_000
            for index in 0..<count { #expect(call.send(MessageBuffer(text: "m\(index)"))) }
            call.halfClose()
            let log = try #require(await collector.log.wait { $0.status != nil })
            #expect(log.status == .ok)
            #expect(log.messages.map { String(decoding: $0, as: UTF8.self) } == (0..<count).map { "m\($0)" })
            #expect(!call.send(MessageBuffer(text: "late")), "a finished call refuses sends")
            let ended = await router.log.wait { $0.ended.count == 1 }
            #expect(ended?.ended.first?.cancelled == false)
        }
    }

    @Test("a server sees the stream as soon as the client opens it, before any message")
    func streamVisibleBeforeFirstMessage() async throws {
        try await withEchoServer { router, _, channel in
            let call = try channel.makeStreamingCall(
                method: "/test.Echo/Stream", metadata: ["client-id": "early"], handler: StreamCollector())
            let seen = await router.log.wait { !$0.accepted.isEmpty }
            #expect(seen?.metadata.first?["client-id"] == "early")
            call.cancel()
        }
    }
}
