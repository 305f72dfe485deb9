import AgentCore
import AgentWire
import Foundation
import GRPCTransport
import Logging

/// The runtime's connection to a host (ours or AutoGen's `GrpcWorkerAgentRuntimeHost`): the
/// `OpenChannel` stream every message travels on, and the unary calls that register agent
/// types and subscriptions. Every call carries this runtime's `client-id`.
public final class HostConnection: ClientCallHandler, @unchecked Sendable {
    // @unchecked Sendable: `stream` is set once in `open` before any traffic and only read
    // afterwards; `closed` is guarded by `lock`.
    public let address: String
    public let clientID: String
    private let channel: Channel
    private let logger: Logger
    private let onMessage: @Sendable (MessageBuffer) -> Void
    private let onClose: @Sendable (Status) -> Void
    private let lock = Lock()
    private var stream: ClientCall?
    private var closed = false
    private var endWaiters: [AsyncStream<Void>.Continuation] = []

    /// - Parameters:
    ///   - onMessage: called on the stream's poller thread for every message from the host.
    ///   - onClose: called once when the stream ends, with its status.
    public init(address: String, clientID: String, maxMessageBytes: Int, logger: Logger,
                onMessage: @escaping @Sendable (MessageBuffer) -> Void,
                onClose: @escaping @Sendable (Status) -> Void) {
        self.address = address
        self.clientID = clientID
        self.logger = logger
        self.onMessage = onMessage
        self.onClose = onClose
        channel = Channel(configuration: .init(
            target: address, maxReceiveMessageBytes: maxMessageBytes * 2 + 1024 * 1024,
            keepaliveInterval: .seconds(30)))
    }

    private var metadata: Metadata { ["client-id": clientID] }

    /// Opens the data channel. Messages from the host flow to `onMessage` from now on.
    public func open() throws {
        let call = try channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true, handler: self)
        lock.withLock { stream = call }
    }

    /// Registers an agent type as served by this connection.
    /// - Throws: ``TransportError`` with the host's status (for example a type another
    ///   client holds).
    public func register(agentType: String) async throws {
        var request = ProtoWriter()
        request.stringField(1, agentType)
        _ = try await channel.unary(
            method: "/agents.AgentRpc/RegisterAgent", request: MessageBuffer(request.bytes), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
    }

    /// Adds a subscription.
    public func add(_ subscription: Subscription) async throws {
        var request = ProtoWriter()
        request.messageField(1) { subscription.encode(into: &$0) }
        _ = try await channel.unary(
            method: "/agents.AgentRpc/AddSubscription", request: MessageBuffer(request.bytes), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
    }

    /// Removes a subscription this connection added.
    public func removeSubscription(id: String) async throws {
        var request = ProtoWriter()
        request.stringField(1, id)
        _ = try await channel.unary(
            method: "/agents.AgentRpc/RemoveSubscription", request: MessageBuffer(request.bytes), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
    }

    /// Every client's subscriptions, as the host has them.
    public func subscriptions() async throws -> [Subscription] {
        let response = try await channel.unary(
            method: "/agents.AgentRpc/GetSubscriptions", request: MessageBuffer([UInt8]()), metadata: metadata,
            deadline: .after(.seconds(30)), waitForReady: true)
        return try response.withUnsafeBytes { bytes in
            var reader = ProtoReader(bytes)
            var result: [Subscription] = []
            while let field = try reader.next() {
                if field.number == 1 { result.append(try Subscription(wire: bytes, range: try field.bytesRange())) }
            }
            return result
        }
    }

    /// Sends a message on the data channel (false if it is closed).
    @discardableResult
    public func send(_ message: MessageBuffer) -> Bool {
        guard let stream = lock.withLock({ stream }) else { return false }
        return stream.send(message)
    }

    /// Closes the data channel — after what was queued on it has gone out and the host has
    /// closed its side, or after `drainTimeout` — then the connection.
    public func close(drainTimeout: Duration = .seconds(2)) async {
        let stream = lock.withLock { () -> ClientCall? in
            closed = true
            return self.stream
        }
        if let stream, stream.halfClose() {
            let ended = AsyncStream<Void>.makeStream()
            lock.withLock { endWaiters.append(ended.continuation) }
            if stream.status != nil { ended.continuation.finish() }
            await withTaskGroup(of: Void.self) { group in
                group.addTask { for await _ in ended.stream {} }
                group.addTask { try? await Task.sleep(for: drainTimeout) }
                await group.next()
                group.cancelAll()
            }
        }
        await channel.shutdown()
    }

    // MARK: ClientCallHandler

    public func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        onMessage(message)
    }

    public func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        let (expected, waiters) = lock.withLock { (closed, endWaiters) }
        for waiter in waiters { waiter.finish() }
        if !expected {
            logger.error("the channel to the host closed", metadata: ["host.address": "\(address)", "status": "\(status)"])
        }
        onClose(status)
    }
}
