import AgentCore
import Foundation
import GRPCTransport
import Logging
import Synchronization

/// A client of the state protocol, for `agentd state` and tests: it opens a control channel
/// (`OpenControlChannel`) to a host under a `client-id` of its own, and asks an agent's runtime,
/// through the host, to save, load or delete the agent's state — or, for `agentd status`, a
/// runtime for its status (``runtimeStatus(ofClient:timeout:)``).
///
/// Each request goes as `ControlMessage{rpc_id: a fresh UUID, destination:
/// "agentid=<type>/<key>", respond_to: "clientid=<this client's id>", rpcMessage:
/// Any(request)}`; the host routes it to the control channel of the runtime serving the type,
/// and routes the runtime's answer back by its destination, `clientid=<this client's id>`.
///
/// No handshake is needed before the first request: the host must know this client's channel
/// before the answer comes back, and it does, because the request travels on that very
/// channel — a host reads it only after it has accepted the channel (agentd's host attaches a
/// control channel when it accepts the call; AutoGen's registers it before it starts reading
/// the stream). Neither host sends anything when it accepts a channel, so there would be no
/// initial metadata to wait for anyway.
///
/// ```swift
/// let client = try StateClient(address: "127.0.0.1:50051")
/// try await client.loadState(#"{"count": 3}"#, into: AgentID("counter/a")!)
/// let text = try await client.saveState(of: AgentID("counter/a")!)   // {"count": 3}
/// await client.close()
/// ```
public final class StateClient: Sendable {
    /// Why a request got no successful answer.
    public struct Failure: Error, Sendable, CustomStringConvertible {
        /// What kind of failure: the host or runtime said no, the channel failed, or nothing
        /// came back in time.
        public struct Code: Hashable, Sendable, CustomStringConvertible {
            private let name: String
            private init(_ name: String) { self.name = name }
            public var description: String { name }

            /// The host (it cannot deliver the request), or the runtime serving the agent,
            /// answered with an error: ``Failure/message`` is its text.
            public static let answeredWithError = Code("answered with an error")
            /// The host is unreachable, refused the control channel, or ended it.
            public static let channelFailed = Code("control channel failed")
            /// Nothing came back within the timeout.
            public static let timedOut = Code("timed out")
            /// The answer is not the response the request asks for.
            public static let unexpectedAnswer = Code("unexpected answer")
        }

        public var code: Code
        /// What happened, in words a user can act on.
        public var message: String
        /// The channel's status, for ``Code/channelFailed``.
        public var status: Status?

        public init(_ code: Code, _ message: String, status: Status? = nil) {
            self.code = code
            self.message = message
            self.status = status
        }

        public var description: String { message }
    }

    /// The `client-id` of this client's control channel (a fresh UUID).
    public let clientID: String
    /// The host's address.
    public var address: String { connection.address }
    private let connection: HostConnection
    private let stream: ClientCall
    private let state = Mutex(State())

    private struct State: ~Copyable {
        /// Requests waiting for their answer, by rpc_id.
        var pending: [String: AnswerSlot] = [:]
        /// Set once the channel has ended.
        var ended: Failure?
    }

    /// Opens the control channel to the host at `address` (connecting now; requests fail with
    /// ``Failure/Code/channelFailed`` if it cannot be reached).
    /// - Parameters:
    ///   - credentials: plaintext (the default) or TLS, with a client certificate for a host
    ///     that requires one.
    ///   - authToken: sent as `authorization: Bearer <token>`, for a host that requires one.
    /// - Throws: ``TransportError`` if the channel cannot be started.
    public init(address: String, credentials: ChannelCredentials = .insecure, authToken: String? = nil,
                logger: Logger = Logger(label: "agentd.state")) throws {
        let clientID = UUID().uuidString.lowercased()
        self.clientID = clientID
        connection = HostConnection(
            address: address, clientID: clientID, maxMessageBytes: 64 * 1024 * 1024, logger: logger,
            credentials: credentials, authToken: authToken)
        let events = StreamEvents()
        stream = try connection.openControlStream(handler: events, waitForReady: false)
        events.client.withLock { $0 = Weak(self) }
    }

    /// The agent's state, as text (see ``StateText``: JSON as the agent wrote it, or a base64
    /// data URL).
    /// - Throws: ``Failure``.
    public func saveState(of agent: AgentID, timeout: Duration = .seconds(10)) async throws(Failure) -> String {
        switch try await send(.saveStateRequest(agent: agent), to: agent, timeout: timeout) {
        case .saveStateResponse(let state, _): return state
        default: preconditionFailure("send(_:to:timeout:) returns the response the request asks for")
        }
    }

    /// Replaces the agent's state with `state` (JSON, or a base64 data URL: see ``StateText``).
    /// - Throws: ``Failure``.
    public func loadState(_ state: String, into agent: AgentID, timeout: Duration = .seconds(10)) async throws(Failure) {
        _ = try await send(.loadStateRequest(agent: agent, state: state), to: agent, timeout: timeout)
    }

    /// Forgets the agent: its instance and its stored state (agentd's `DeleteStateRequest`).
    /// - Throws: ``Failure``.
    public func deleteState(of agent: AgentID, timeout: Duration = .seconds(10)) async throws(Failure) {
        _ = try await send(.deleteStateRequest(agent: agent), to: agent, timeout: timeout)
    }

    /// Sends `request` (a state request) to `agentid=<agent>` and returns the response of the
    /// kind it asks for, without an error.
    /// - Throws: ``Failure``: the response's error, the channel's end, an answer of another
    ///   kind, or the timeout.
    public func send(
        _ request: ControlPlaneCodec.StateMessage, to agent: AgentID, timeout: Duration = .seconds(10)
    ) async throws(Failure) -> ControlPlaneCodec.StateMessage {
        guard let expected = request.kind.errorResponse("")?.kind else {
            preconditionFailure("\(request.kind.messageName) is not a request")
        }
        let message = try await exchange(
            ControlPlaneCodec.encodeStateMessage(request), destination: "agentid=\(agent)",
            action: Self.action(request, agent), timeout: timeout)
        let response: ControlPlaneCodec.StateMessage?
        do {
            response = try message.rpcMessage.flatMap { try ControlPlaneCodec.decodeStateMessage($0) }
        } catch {
            throw Failure(.unexpectedAnswer, "the answer is malformed: \(error)")
        }
        guard let response, response.kind == expected else {
            let type = message.rpcMessage?.typeURL ?? "no message"
            throw Failure(.unexpectedAnswer, "the answer carries \(type), not the \(expected.messageName) the request asks for")
        }
        switch response {
        case .saveStateResponse(_, let error), .loadStateResponse(let error), .deleteStateResponse(let error):
            if !error.isEmpty { throw Failure(.answeredWithError, error) }
        case .saveStateRequest, .loadStateRequest, .deleteStateRequest:
            break
        }
        return response
    }

    /// Sends `ControlMessage{rpc_id: a fresh UUID, destination, respond_to: this client,
    /// rpcMessage}` and returns the message that comes back with its `rpc_id`, whatever it
    /// carries.
    /// - Parameter action: what the request does, for the timeout's message ("saving the state
    ///   of echo/k").
    /// - Throws: ``Failure``: the channel's end or the timeout.
    func exchange(
        _ rpcMessage: ControlPlaneCodec.AnyMessage, destination: String, action: String, timeout: Duration
    ) async throws(Failure) -> ControlPlaneCodec.ControlMessage {
        let rpcID = UUID().uuidString.lowercased()
        let slot = AnswerSlot()
        let ended: Failure? = state.withLock { state in
            if let ended = state.ended { return ended }
            state.pending[rpcID] = slot
            return nil
        }
        if let ended { throw ended }
        let message = ControlPlaneCodec.encodeControlMessage(.init(
            rpcID: rpcID, destination: destination, respondTo: "clientid=\(clientID)", rpcMessage: rpcMessage))
        let address = self.address
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            guard !Task.isCancelled else { return }
            self?.resolve(rpcID, .failure(Failure(
                .timedOut,
                "no answer from the host at \(address) within \(StateRequestServer.text(timeout)) for \(action) (a host that cannot deliver a control message may drop it without answering, as AutoGen's does)")))
        }
        defer { timer.cancel() }
        if !stream.send(MessageBuffer(message)) {
            // The stream has ended or is ending: its status says why. Its end resolves every
            // request pending then (this one was made pending before the send); if the end came
            // before, it is here now. A call's end always comes (and the timer above stays as the
            // last resort): no guess without the status, which a loaded machine can delay past
            // any fixed wait.
            if let ended = state.withLock({ $0.ended }) { resolve(rpcID, .failure(ended)) }
        }
        return try await slot.value()
    }

    /// Closes the control channel and the connection.
    public func close() async {
        stream.halfClose()
        await connection.close()
    }

    // MARK: Answers

    private func resolve(_ rpcID: String, _ result: Result<ControlPlaneCodec.ControlMessage, Failure>) {
        let pending = state.withLock { $0.pending.removeValue(forKey: rpcID) }
        pending?.fulfil(result)
    }

    private func receive(_ buffer: MessageBuffer) {
        guard let message = try? buffer.withUnsafeBytes({ try ControlPlaneCodec.decodeControlMessage($0) }) else {
            return
        }
        resolve(message.rpcID, .success(message))
    }

    private func ended(with status: Status) {
        let failure: Failure
        switch status.code {
        case .unavailable:
            failure = Failure(.channelFailed, "the host at \(address) is unreachable (\(status))", status: status)
        case .unauthenticated, .permissionDenied:
            failure = Failure(.channelFailed, "the host at \(address) refused the control channel (\(status))", status: status)
        default:
            failure = Failure(.channelFailed, "the control channel to the host at \(address) ended (\(status))", status: status)
        }
        let pending = state.withLock { state in
            state.ended = failure
            defer { state.pending = [:] }
            return Array(state.pending.values)
        }
        for request in pending { request.fulfil(.failure(failure)) }
    }

    /// As in "saving the state of echo/k".
    private static func action(_ request: ControlPlaneCodec.StateMessage, _ agent: AgentID) -> String {
        switch request.kind {
        case .loadStateRequest: "loading the state of \(agent)"
        case .deleteStateRequest: "deleting the state of \(agent)"
        default: "saving the state of \(agent)"
        }
    }

    /// The stream's events, for the client while it exists (the call holds its handler until
    /// it ends; a weak reference keeps that from holding the client).
    private final class StreamEvents: ClientCallHandler {
        let client = Mutex(Weak<StateClient>(nil))

        func call(_ call: ClientCall, didReceive message: MessageBuffer) {
            client.withLock { $0.object }?.receive(message)
        }

        func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
            client.withLock { $0.object }?.ended(with: status)
        }
    }
}

/// A weak reference that can be stored in a `Mutex`.
private struct Weak<Object: AnyObject & Sendable>: Sendable {
    weak var object: Object?
    init(_ object: Object?) { self.object = object }
}

/// One request's answer, which may come before or after someone waits for it.
private final class AnswerSlot: Sendable {
    private struct State: ~Copyable {
        var result: Result<ControlPlaneCodec.ControlMessage, StateClient.Failure>?
        var waiter: CheckedContinuation<Result<ControlPlaneCodec.ControlMessage, StateClient.Failure>, Never>?
    }
    private let state = Mutex(State())

    func fulfil(_ result: Result<ControlPlaneCodec.ControlMessage, StateClient.Failure>) {
        let waiter = state.withLock { state -> CheckedContinuation<Result<ControlPlaneCodec.ControlMessage, StateClient.Failure>, Never>? in
            guard state.result == nil else { return nil }
            state.result = result
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: result)
    }

    func value() async throws(StateClient.Failure) -> ControlPlaneCodec.ControlMessage {
        let result = await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Result<ControlPlaneCodec.ControlMessage, StateClient.Failure>? in
                if let result = state.result { return result }
                state.waiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        return try result.get()
    }
}
