import AgentCore
import AgentHost
import AgentTestSupport
import GRPCTransport
import ProtoWire
import Testing

/// `grpc.health.v1.HealthCheckResponse.ServingStatus`, as a client reads it.
enum ServingStatus: UInt64, Sendable {
    case unknown = 0, serving = 1, notServing = 2, serviceUnknown = 3
}

/// The health service's two messages, written and read as any gRPC client does.
enum HealthMessages {
    /// `HealthCheckRequest{service = 1}`.
    static func request(service: String) -> MessageBuffer {
        var writer = ProtoWriter()
        writer.stringField(1, service)
        return MessageBuffer(writer.bytes)
    }

    /// `HealthCheckResponse{status = 1}`'s status (UNKNOWN when absent, as proto3 reads it).
    static func status(of message: MessageBuffer) throws -> ServingStatus? {
        try message.withUnsafeBytes { bytes in
            var reader = ProtoReader(bytes)
            var status: UInt64 = 0
            while let field = try reader.next() {
                if field.number == 1, case .varint(let value) = field.value { status = value }
            }
            return ServingStatus(rawValue: status)
        }
    }
}

/// What a `Watch` call received, and how it ended.
struct WatchLog: Sendable {
    var statuses: [ServingStatus?] = []
    var end: Status?
}

/// Records a `Watch` call's messages.
final class WatchRecorder: ClientCallHandler {
    let log = AsyncCondition(WatchLog())

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        let status = try? HealthMessages.status(of: message)
        log.mutate { $0.statuses.append(status ?? nil) }
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        log.mutate { $0.end = status }
    }
}

@Suite("grpc.health.v1.Health: Check and Watch, without client-id")
struct HealthTests {
    static let token = "0123456789abcdef0123456789abcdef"

    /// `Check(service)` with `metadata` (none by default: no client-id).
    static func check(_ harness: HostHarness, _ service: String, metadata: Metadata = Metadata()) async throws -> ServingStatus? {
        let response = try await harness.channel().unary(
            method: "/grpc.health.v1.Health/Check", request: HealthMessages.request(service: service),
            metadata: metadata, waitForReady: true)
        return try HealthMessages.status(of: response)
    }

    /// Starts `Watch(service)` and returns its recorder.
    static func watch(_ harness: HostHarness, _ service: String, metadata: Metadata = Metadata()) throws -> WatchRecorder {
        let recorder = WatchRecorder()
        let call = try harness.channel().makeStreamingCall(
            method: "/grpc.health.v1.Health/Watch", metadata: metadata, waitForReady: true, handler: recorder)
        call.send(HealthMessages.request(service: service))
        call.halfClose()
        return recorder
    }

    @Test("Check answers SERVING for the server and for agents.AgentRpc")
    func checkServing() async throws {
        try await withHost { harness in
            let server = try await Self.check(harness, "")
            let agentRpc = try await Self.check(harness, "agents.AgentRpc")
            #expect(server == .serving)
            #expect(agentRpc == .serving)
        }
    }

    @Test("Check of a service the host does not serve ends with NOT_FOUND")
    func checkUnknownService() async throws {
        try await withHost { harness in
            let error = await #expect(throws: TransportError.self) {
                _ = try await Self.check(harness, "agents.SomethingElse")
            }
            #expect(error?.status.code == .notFound)
            #expect(error?.status.message.contains("agents.SomethingElse") == true)
        }
    }

    @Test("Watch sees SERVING, then NOT_SERVING when shutdown starts, then ends when the host stops")
    func watchSeesShutdown() async throws {
        try await withHost { harness in
            let server = try Self.watch(harness, "")
            let protocolWatch = try Self.watch(harness, "agents.AgentRpc")
            for recorder in [server, protocolWatch] {
                #expect(await recorder.log.wait { !$0.statuses.isEmpty }?.statuses == [.serving])
            }
            // A worker with an open stream: shutdown has something to close as well.
            _ = try await harness.worker("worker")

            await harness.host.shutdown()

            for recorder in [server, protocolWatch] {
                let log = try #require(await recorder.log.wait { $0.end != nil })
                #expect(log.statuses == [.serving, .notServing])
                #expect(log.end?.code == .ok)
            }
        }
    }

    @Test("Watch of an unknown service gets SERVICE_UNKNOWN and stays open until the host stops")
    func watchUnknownService() async throws {
        try await withHost { harness in
            let recorder = try Self.watch(harness, "nobody.Serves")
            #expect(await recorder.log.wait { !$0.statuses.isEmpty }?.statuses == [.serviceUnknown])
            #expect(recorder.log.value.end == nil)
            await harness.host.shutdown()
            let log = try #require(await recorder.log.wait { $0.end != nil })
            #expect(log.statuses == [.serviceUnknown])
            #expect(log.end?.code == .ok)
        }
    }

    @Test("once shutdown has started the host no longer reports serving")
    func statusAfterShutdown() async throws {
        try await withHost { harness in
            #expect(harness.host.status()["host"]?["serving"] == true)
            await harness.host.shutdown(gracePeriod: .zero)
            #expect(harness.host.status()["host"]?["serving"] == false)
        }
    }

    @Test("on a host with tokens, health calls need one (and still no client-id)")
    func tokenRequired() async throws {
        try await withHost(authTokens: [Self.token]) { harness in
            let error = await #expect(throws: TransportError.self) {
                _ = try await Self.check(harness, "")
            }
            #expect(error?.status.code == .unauthenticated)
            let refused = try Self.watch(harness, "")
            #expect(await refused.log.wait { $0.end != nil }?.end?.code == .unauthenticated)
            let admitted = try await Self.check(harness, "", metadata: ["authorization": "Bearer \(Self.token)"])
            #expect(admitted == .serving)
        }
    }

    @Test("a method the health service does not have is UNIMPLEMENTED")
    func unknownMethod() async throws {
        try await withHost { harness in
            let error = await #expect(throws: TransportError.self) {
                _ = try await harness.channel().unary(
                    method: "/grpc.health.v1.Health/List", request: MessageBuffer([UInt8]()), waitForReady: true)
            }
            #expect(error?.status.code == .unimplemented)
        }
    }
}
