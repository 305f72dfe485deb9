import AgentTestSupport
import Foundation
import GRPCTransport

/// What the test server saw of its calls.
struct ServerLog: Sendable {
    var accepted: [String] = []
    var metadata: [Metadata] = []
    var ended: [(method: String, cancelled: Bool)] = []
    var received = 0
}

/// A test service:
/// - `/test.Echo/Unary`: answers with the request's bytes;
/// - `/test.Echo/Stream`: echoes each message; finishes OK when the client half-closes;
/// - `/test.Echo/Fail`: finishes with `INVALID_ARGUMENT` and the request's text as message;
/// - `/test.Echo/Silent`: never answers (for deadlines, cancellation and shutdown);
/// - `/test.Echo/Metadata`: answers with the request's `x-echo` metadata value.
final class EchoRouter: CallRouter, Sendable {
    let log = AsyncCondition(ServerLog())

    func handler(for call: ServerCall) -> (any ServerCallHandler)? {
        log.mutate {
            $0.accepted.append(call.method)
            $0.metadata.append(call.metadata)
        }
        switch call.method {
        case "/test.Echo/Unary", "/test.Echo/Stream", "/test.Echo/Fail", "/test.Echo/Silent",
            "/test.Echo/Metadata":
            return EchoHandler(log: log)
        default:
            return nil
        }
    }
}

final class EchoHandler: ServerCallHandler {
    let log: AsyncCondition<ServerLog>
    init(log: AsyncCondition<ServerLog>) { self.log = log }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        log.mutate { $0.received += 1 }
        switch call.method {
        case "/test.Echo/Unary": call.respond(message)
        case "/test.Echo/Stream": call.send(message)
        case "/test.Echo/Fail":
            call.finish(Status(.invalidArgument, String(decoding: message.bytes, as: UTF8.self)))
        case "/test.Echo/Metadata":
            call.respond(MessageBuffer(Array((call.metadata["x-echo"] ?? "").utf8)))
        default: break
        }
    }

    func callDidHalfClose(_ call: ServerCall) {
        if call.method == "/test.Echo/Stream" { call.finish(.ok) }
    }

    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        log.mutate { $0.ended.append((call.method, cancelled)) }
    }
}

/// What a client saw of one streaming call.
struct StreamLog: Sendable {
    var messages: [[UInt8]] = []
    var status: Status?
}

final class StreamCollector: ClientCallHandler {
    let log = AsyncCondition(StreamLog())

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        let bytes = message.bytes
        log.mutate { $0.messages.append(bytes) }
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        log.mutate { $0.status = status }
    }
}

extension MessageBuffer {
    convenience init(text: String) { self.init(Array(text.utf8)) }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}

/// A server on 127.0.0.1, port 0, and a channel to it, torn down at the end of `body`.
func withEchoServer(
    maxReceiveMessageBytes: Int = 4 * 1024 * 1024,
    _ body: (EchoRouter, Server, Channel) async throws -> Void
) async throws {
    let router = EchoRouter()
    let server = try Server(
        configuration: .init(address: "127.0.0.1:0", maxReceiveMessageBytes: maxReceiveMessageBytes),
        router: router)
    let channel = Channel(configuration: .init(target: "127.0.0.1:\(server.port)"))
    do {
        try await body(router, server, channel)
    } catch {
        await channel.shutdown()
        await server.shutdown()
        throw error
    }
    await channel.shutdown()
    await server.shutdown()
}
