import GRPCTransport
import ProtoWire
import Synchronization

/// The standard gRPC health service, `grpc.health.v1.Health`, as load balancers, Kubernetes'
/// gRPC probes and `grpc_health_probe` ask it:
///
/// - `Check(HealthCheckRequest{service})` answers `HealthCheckResponse{status}`: `SERVING` for
///   the server as a whole (`""`) and for `agents.AgentRpc` once the host accepts workers,
///   `NOT_SERVING` from the moment it starts shutting down; any other service name ends the
///   call with `NOT_FOUND`, as the health protocol says.
/// - `Watch(HealthCheckRequest{service})` streams the status: the current one at once, then
///   each change (`NOT_SERVING` when shutdown starts), and ends with `OK` when the host stops.
///   A name the host does not serve gets `SERVICE_UNKNOWN` and the stream stays open, as the
///   protocol says, until the host stops.
///
/// The calls need no `client-id`; on a host that requires tokens they need one like any other
/// call (``HostRouter`` checks the token before it routes here).
///
/// The two messages are tiny and read and written field by field with `ProtoWire`.
final class HealthService: Sendable {
    /// `grpc.health.v1.HealthCheckResponse.ServingStatus`.
    enum ServingStatus: UInt64, Sendable {
        case unknown = 0
        case serving = 1
        case notServing = 2
        case serviceUnknown = 3
    }

    /// Where the host is in its life, as the health service reports it.
    private enum Phase {
        case serving
        case shuttingDown
        /// Every watch has ended; one that starts now ends at once.
        case stopped
    }

    private struct State: ~Copyable {
        var phase = Phase.serving
        /// Open `Watch` calls, by the call's identity.
        var watches: [ObjectIdentifier: Watch] = [:]
    }

    /// One open `Watch` call and what it was last told.
    private struct Watch {
        var call: ServerCall
        var service: String
        var lastSent: ServingStatus
    }

    /// The methods' common prefix: a call whose path starts with it is the health service's.
    static let methodPrefix = "/grpc.health.v1.Health/"
    static let checkMethod = "/grpc.health.v1.Health/Check"
    static let watchMethod = "/grpc.health.v1.Health/Watch"
    /// The services the host reports on: the server as a whole and the AutoGen protocol.
    static let services: Set<String> = ["", "agents.AgentRpc"]

    /// `HealthCheckRequest.service`.
    static let serviceField = 1
    /// `HealthCheckResponse.status`.
    static let statusField = 1

    private let state = Mutex(State())

    /// The handler of a health call, or nil after finishing a call to a method the service does
    /// not have with `UNIMPLEMENTED`.
    func handler(for call: ServerCall) -> (any ServerCallHandler)? {
        switch call.method {
        case Self.checkMethod: return Check(service: self)
        case Self.watchMethod: return WatchCall(service: self)
        default:
            call.finish(Status(.unimplemented, "grpc.health.v1.Health has no method \(call.method)"))
            return nil
        }
    }

    /// What `service` is now.
    func status(of service: String) -> ServingStatus {
        state.withLock { Self.status(of: service, in: $0.phase) }
    }

    private static func status(of service: String, in phase: Phase) -> ServingStatus {
        guard services.contains(service) else { return .serviceUnknown }
        return phase == .serving ? .serving : .notServing
    }

    /// The host has started shutting down: every watch of a served service is told
    /// `NOT_SERVING`.
    func shutdownStarted() {
        state.withLock { state in
            guard state.phase == .serving else { return }
            state.phase = .shuttingDown
            for (id, watch) in state.watches {
                // Sent with the lock held, so that a watch that starts meanwhile cannot be told
                // SERVING after NOT_SERVING (a send only queues).
                let now = Self.status(of: watch.service, in: state.phase)
                guard now != watch.lastSent else { continue }
                watch.call.send(MessageBuffer(Self.encodeResponse(now)))
                state.watches[id]?.lastSent = now
            }
        }
    }

    /// The host is stopping: every watch ends with `OK` (after what it was sent).
    func stop() {
        let watches = state.withLock { state in
            state.phase = .stopped
            defer { state.watches = [:] }
            return Array(state.watches.values)
        }
        for watch in watches { watch.call.finish(.ok) }
    }

    /// Starts watching `service` on `call`: sends the current status, and ends the call at once
    /// if the host has stopped.
    fileprivate func startWatch(_ call: ServerCall, service: String) {
        let stopped = state.withLock { state in
            let now = Self.status(of: service, in: state.phase)
            call.send(MessageBuffer(Self.encodeResponse(now)))
            guard state.phase != .stopped else { return true }
            state.watches[ObjectIdentifier(call)] = Watch(call: call, service: service, lastSent: now)
            return false
        }
        if stopped { call.finish(.ok) }
    }

    fileprivate func endWatch(_ call: ServerCall) {
        state.withLock { _ = $0.watches.removeValue(forKey: ObjectIdentifier(call)) }
    }

    // MARK: Messages

    /// `HealthCheckRequest.service` of `bytes` (empty when absent; unknown fields skipped).
    /// - Throws: ``WireError`` for bytes that are not a protobuf message.
    static func decodeRequest(_ bytes: UnsafeRawBufferPointer) throws -> String {
        var reader = ProtoReader(bytes)
        var service = ""
        while let field = try reader.next() {
            if field.number == serviceField { service = reader.string(try field.bytesRange()) }
        }
        return service
    }

    /// The service `message` asks about; nil after ending `call` with `INVALID_ARGUMENT` when
    /// `message` is no `HealthCheckRequest`.
    static func requestedService(_ message: MessageBuffer, on call: ServerCall) -> String? {
        do {
            return try message.withUnsafeBytes { try decodeRequest($0) }
        } catch {
            call.finish(Status(.invalidArgument, "malformed HealthCheckRequest: \(error)"))
            return nil
        }
    }

    /// `HealthCheckResponse{status}`.
    static func encodeResponse(_ status: ServingStatus) -> [UInt8] {
        var writer = ProtoWriter(capacity: 2)
        writer.varintField(statusField, status.rawValue)
        return writer.bytes
    }

    // MARK: The calls

    /// One `Check`: answers its one request.
    private final class Check: ServerCallHandler {
        let service: HealthService

        init(service: HealthService) { self.service = service }

        func call(_ call: ServerCall, didReceive message: MessageBuffer) {
            guard let name = HealthService.requestedService(message, on: call) else { return }
            let status = service.status(of: name)
            guard status != .serviceUnknown else {
                call.finish(Status(.notFound, "unknown service '\(name)': this host reports on '' and 'agents.AgentRpc'"))
                return
            }
            call.respond(MessageBuffer(HealthService.encodeResponse(status)))
        }
    }

    /// One `Watch`: its first request starts the watch; the call then stays open.
    private final class WatchCall: ServerCallHandler {
        let service: HealthService
        private let started = Atomic(false)

        init(service: HealthService) { self.service = service }

        func call(_ call: ServerCall, didReceive message: MessageBuffer) {
            guard !started.exchange(true, ordering: .relaxed),
                  let name = HealthService.requestedService(message, on: call) else { return }
            service.startWatch(call, service: name)
        }

        func callDidHalfClose(_ call: ServerCall) {
            guard !started.exchange(true, ordering: .relaxed) else { return }
            call.finish(Status(.invalidArgument, "Watch needs a HealthCheckRequest before the client half-closes"))
        }

        func callDidEnd(_ call: ServerCall, cancelled: Bool) {
            service.endWatch(call)
        }
    }
}
