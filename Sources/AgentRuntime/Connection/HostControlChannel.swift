import AgentCore
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// The runtime's `OpenControlChannel` stream to its host: how the state protocol's requests
/// for this runtime's agents reach it (routed by the host from `agentid=<type>/<key>` or
/// `clientid=<this runtime's id>`), and how their answers go back. The requests go to a
/// ``StateRequestServer``.
///
/// The stream is opened on the data channel's ``HostConnection`` — same `client-id`, same
/// credentials and token — when the runtime connects. Whenever it ends other than by
/// ``close()`` (the host restarted, the network dropped, the host replaced it), it is opened
/// again after the connection's backoff, and the new stream waits for the host to be
/// reachable: so it is back after every reconnection, the embedded host's included.
///
/// **Attachment.** A host routes control messages to a stream only once it has accepted that
/// stream, and neither our host nor AutoGen's sends anything when it does. So after opening a
/// stream the runtime sends a probe on it — a `ControlMessage` without `rpcMessage`, with a
/// fresh `rpc_id`, addressed to its own `clientid=` — and counts the stream as attached once
/// the host routes the probe back (both hosts route `clientid=` destinations without looking
/// inside). ``waitUntilAttached(timeout:)`` waits for that; the runtime's `start()` does, so
/// that once the runtime says it is ready, state requests reach it. agentd's status requests
/// travel the same way and go to a ``StatusRequestServer``.
final class HostControlChannel: Sendable {
    private struct State: ~Copyable {
        var stream: ClientCall?
        /// The `rpc_id` of the probe sent on `stream`.
        var probeID = ""
        var attached = false
        var closed = false
        /// Streams that ended in a row without attaching (for the backoff and the logs).
        var failures = 0
        var reopening: Task<Void, Never>?
        var attachWaiters: [AsyncStream<Void>.Continuation] = []
    }

    private let connection: HostConnection
    private let requests: StateRequestServer
    private let status: StatusRequestServer?
    private let backoff: HostConnection.Reconnection
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - connection: the data channel's connection, whose channel, `client-id` and token the
    ///     control stream shares.
    ///   - requests: what answers the state requests that arrive.
    ///   - status: what answers agentd's status requests (nil: they are dropped, logged).
    ///   - backoff: the waits between attempts to open the stream again (its `initialBackoff`
    ///     and `maxBackoff`).
    init(connection: HostConnection, requests: StateRequestServer, status: StatusRequestServer? = nil,
         backoff: HostConnection.Reconnection, logger: Logger) {
        self.connection = connection
        self.requests = requests
        self.status = status
        self.backoff = backoff
        self.logger = logger
    }

    /// Whether the host has routed this stream's probe back (false while it is reopened).
    var isAttached: Bool { state.withLock { $0.attached } }

    /// Opens the stream (and sends its probe).
    func open() {
        let closed = state.withLock { $0.closed }
        if !closed { openStream() }
    }

    /// Waits until the stream is attached, or `timeout` passes (logged). Returns whether it is.
    @discardableResult
    func waitUntilAttached(timeout: Duration) async -> Bool {
        let (stream, continuation) = AsyncStream.makeStream(of: Void.self)
        let settled: Bool? = state.withLock { state in
            if state.attached || state.closed { return state.attached }
            state.attachWaiters.append(continuation)
            return nil
        }
        if let settled { return settled }
        let done = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in stream {}
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        let isAttached = self.isAttached
        if !done || !isAttached {
            logger.warning("the host has not routed this runtime's control channel yet: state requests may not reach it until it does", metadata: [
                "host.address": "\(connection.address)", "client.id": "\(connection.clientID)",
                "waited": "\(timeout)",
            ])
        }
        return isAttached
    }

    /// Refuses new state requests (answered with an error): the first step of shutdown.
    func closeIntake() {
        requests.closeIntake()
    }

    /// Answers the requests still being served with an error, then half-closes the stream
    /// (the answers go out first) and stops reopening it. The stream ends for good when the
    /// host closes its side or the connection is closed.
    func close() {
        let abandoned = requests.abandonPending(reason: "the runtime is shutting down; the state request was not finished")
        if abandoned > 0 {
            logger.warning("state requests still being served at shutdown were answered with an error", metadata: [
                "pending": "\(abandoned)",
            ])
        }
        let (stream, reopening, waiters) = state.withLock { state in
            state.closed = true
            defer { state.attachWaiters = [] }
            return (state.stream, state.reopening, state.attachWaiters)
        }
        reopening?.cancel()
        for waiter in waiters { waiter.finish() }
        stream?.halfClose()
    }

    // MARK: The stream

    private func openStream() {
        let probeID = "agentd-attach-\(UUID().uuidString.lowercased())"
        let call: ClientCall
        do {
            call = try connection.openControlStream(handler: StreamEvents(channel: self), waitForReady: true)
        } catch {
            // The connection is closed: so is the runtime.
            logger.debug("control channel not opened", metadata: ["error": "\(error)"])
            return
        }
        let closed = state.withLock { state in
            guard !state.closed else { return true }
            state.stream = call
            state.probeID = probeID
            state.attached = false
            return false
        }
        if closed {
            call.cancel()
            return
        }
        let probe = ControlPlaneCodec.encodeControlMessage(.init(
            rpcID: probeID, destination: "clientid=\(connection.clientID)", rpcMessage: nil))
        _ = call.send(MessageBuffer(probe))
    }

    private func receive(_ buffer: MessageBuffer, on call: ClientCall) {
        let message: ControlPlaneCodec.ControlMessage
        do {
            message = try buffer.withUnsafeBytes { try ControlPlaneCodec.decodeControlMessage($0) }
        } catch {
            logger.warning("malformed control message dropped", metadata: [
                "error": "\(error)", "message.bytes": "\(buffer.count)",
            ])
            return
        }
        if message.respondTo.isEmpty, message.rpcMessage == nil {
            attached(by: message.rpcID, on: call)
            return
        }
        if let status, StatusRequestServer.serves(message) {
            status.serve(message) { [weak self] answer in
                self?.send(answer, rpcID: message.rpcID, arrivedOn: call)
            }
            return
        }
        requests.serve(message) { [weak self] answer in
            self?.send(answer, rpcID: message.rpcID, arrivedOn: call)
        }
    }

    /// A probe came back: the stream is attached if it is this stream's.
    private func attached(by rpcID: String, on call: ClientCall) {
        let waiters: [AsyncStream<Void>.Continuation]? = state.withLock { state in
            guard state.stream === call, state.probeID == rpcID, !state.attached else { return nil }
            state.attached = true
            state.failures = 0
            defer { state.attachWaiters = [] }
            return state.attachWaiters
        }
        guard let waiters else {
            logger.debug("control message without a request dropped", metadata: ["control.rpc_id": "\(rpcID)"])
            return
        }
        for waiter in waiters { waiter.finish() }
        logger.info("control channel attached", metadata: [
            "host.address": "\(connection.address)", "client.id": "\(connection.clientID)",
        ])
    }

    /// Sends an answer on the current stream (the request's, or the one that replaced it: the
    /// host routes the answer by its destination either way).
    private func send(_ answer: [UInt8], rpcID: String, arrivedOn call: ClientCall) {
        let stream = state.withLock { $0.stream } ?? call
        if !stream.send(MessageBuffer(answer)) {
            logger.warning("answer to a state request lost: the control channel to the host is down", metadata: [
                "control.rpc_id": "\(rpcID)", "host.address": "\(connection.address)",
            ])
        }
    }

    private func stream(_ call: ClientCall, didFinishWith status: Status) {
        let outcome: (failures: Int, wasAttached: Bool)? = state.withLock { state in
            guard state.stream === call else { return nil }
            let wasAttached = state.attached
            state.stream = nil
            state.attached = false
            guard !state.closed else { return nil }
            state.failures = wasAttached ? 0 : state.failures + 1
            return (state.failures, wasAttached)
        }
        guard let outcome else { return }
        let wait = HostConnection.backoff(attempt: max(0, outcome.failures - 1), policy: backoff)
        // One line per break, and for a host that keeps refusing the stream, the first refusal
        // and then every 20th.
        if outcome.wasAttached || outcome.failures == 1 || outcome.failures % 20 == 0 {
            logger.warning("the control channel to the host closed; reopening it", metadata: [
                "host.address": "\(connection.address)", "status": "\(status)",
                "attempts.failed": "\(outcome.failures)", "reopen.after": "\(wait)",
            ])
        }
        let reopening = Task { [weak self] in
            try? await Task.sleep(for: wait)
            guard !Task.isCancelled, let self else { return }
            self.open()
        }
        state.withLock { $0.reopening = reopening }
    }

    /// One stream's events; the call releases it when it ends, so holding the channel forms
    /// no cycle that outlives the stream.
    private final class StreamEvents: ClientCallHandler {
        let channel: HostControlChannel

        init(channel: HostControlChannel) { self.channel = channel }

        func call(_ call: ClientCall, didReceive message: MessageBuffer) {
            channel.receive(message, on: call)
        }

        func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
            channel.stream(call, didFinishWith: status)
        }
    }
}
