import AgentCore
import AgentTestSupport
import ProtoWire
import Foundation
import GRPCTransport

/// A failure of a test worker: a wait that timed out, a send the stream refused.
struct WorkerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Everything a worker received on its data channel, in arrival order, and how it ended.
struct DataLog: Sendable {
    var messages: [DataMessage] = []
    /// Set once the stream is over.
    var status: Status?
    /// The host answered the readiness probe: it serves this stream.
    var isReady = false
    /// The host's latest acknowledgement on an acknowledged stream (``AgentCore/Delivery``).
    var acknowledged: UInt64 = 0
    /// Acknowledgement messages received.
    var acknowledgements = 0

    var events: [ReceivedEvent] {
        messages.compactMap { if case .event(let event) = $0 { event } else { nil } }
    }

    var requests: [ReceivedRequest] {
        messages.compactMap { if case .request(let request) = $0 { request } else { nil } }
    }

    var responses: [ReceivedResponse] {
        messages.compactMap { if case .response(let response) = $0 { response } else { nil } }
    }

    var summary: String {
        let kinds = messages.map { message -> String in
            switch message {
            case .event(let event): "event(\(event.topicType)/\(event.topicSource))"
            case .request(let request): "request(\(request.requestID) -> \(request.target.map(\.description) ?? "?"))"
            case .response(let response): "response(\(response.requestID)\(response.error.isEmpty ? "" : ", error"))"
            case .unreadable(let bytes): "unreadable(\(bytes.count) bytes)"
            }
        }
        return "\(messages.count) messages \(kinds.suffix(8))\(status.map { ", ended \($0)" } ?? "")"
    }
}

/// Records a data channel's messages (on the channel's poller thread).
final class DataStreamRecorder: ClientCallHandler {
    let log = AsyncCondition(DataLog())

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        if let count = message.withUnsafeBytes({ Delivery.acknowledgedCount($0) }) {
            log.mutate { log in
                log.acknowledged = count
                log.acknowledgements += 1
            }
            return
        }
        let received = DataMessage(message.bytes)
        if case .response(let response) = received, response.requestID == RawWorker.readinessProbeID {
            log.mutate { $0.isReady = true }
            return
        }
        log.mutate { $0.messages.append(received) }
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        log.mutate { $0.status = status }
    }
}

/// A worker speaking the protocol by hand: one connection (its own ``Channel``) with its
/// `client-id`, an open `OpenChannel` stream whose every message it records, and the unary
/// registration calls. What it sends is built field by field, so tests can compare the bytes
/// that arrive elsewhere with the bytes it sent.
final class RawWorker: Sendable {
    /// The request id of the probe ``connect(to:name:)`` sends to learn that the host serves
    /// the stream (an RPC to an agent type nobody registers, which the host answers at once).
    static let readinessProbeID = "raw-worker-readiness-probe"

    let name: String
    let clientID: String
    /// Sent as `authorization: Bearer <token>` on every call, when set.
    let authToken: String?
    let channel: Channel
    let call: ClientCall
    private let recorder: DataStreamRecorder

    var log: AsyncCondition<DataLog> { recorder.log }
    var metadata: Metadata {
        var metadata: Metadata = ["client-id": clientID]
        if let authToken { metadata.add("authorization", "Bearer \(authToken)") }
        return metadata
    }

    private init(
        name: String, clientID: String, authToken: String?, channel: Channel, call: ClientCall,
        recorder: DataStreamRecorder
    ) {
        self.name = name
        self.clientID = clientID
        self.authToken = authToken
        self.channel = channel
        self.call = call
        self.recorder = recorder
    }

    /// Connects to the host at `target`, opens the data channel and returns once the host
    /// serves it.
    /// - Parameters:
    ///   - credentials: plaintext by default, or TLS.
    ///   - authToken: sent as `authorization: Bearer <token>` on every call, when set.
    static func connect(
        to target: String, name: String, clientID: String? = nil, credentials: ChannelCredentials = .insecure,
        authToken: String? = nil, acknowledged: Bool = false
    ) async throws -> RawWorker {
        let clientID = clientID ?? "\(name)-\(UUID().uuidString)"
        let channel = Channel(configuration: .init(target: target, credentials: credentials))
        let recorder = DataStreamRecorder()
        var metadata: Metadata = ["client-id": clientID]
        if let authToken { metadata.add("authorization", "Bearer \(authToken)") }
        if acknowledged { metadata.add(Delivery.metadataKey, "1") }
        let call: ClientCall
        do {
            call = try channel.makeStreamingCall(
                method: "/agents.AgentRpc/OpenChannel", metadata: metadata, waitForReady: true,
                handler: recorder)
        } catch {
            await channel.shutdown()
            throw error
        }
        let worker = RawWorker(
            name: name, clientID: clientID, authToken: authToken, channel: channel, call: call, recorder: recorder)
        do {
            try worker.send(DataMessageBuilder.request(
                id: readinessProbeID, source: nil, target: AgentRef("raw-worker-nobody", "probe"), method: "probe",
                payload: .json("Probe", "{}")))
            _ = try await worker.waitFor("the host to serve the stream") { $0.isReady || $0.status != nil }
            if let status = worker.log.value.status {
                throw WorkerError("\(name): the host ended the data channel at once: \(status)")
            }
        } catch {
            await channel.shutdown()
            throw error
        }
        return worker
    }

    // MARK: Registration calls

    /// A unary `agents.AgentRpc` call with this worker's `client-id`; returns the response bytes.
    /// - Throws: ``TransportError`` carrying the host's status when it refuses.
    @discardableResult
    func unary(_ method: String, _ request: [UInt8]) async throws -> [UInt8] {
        try await channel.unary(
            method: "/agents.AgentRpc/\(method)", request: MessageBuffer(request), metadata: metadata,
            waitForReady: true
        ).bytes
    }

    /// `RegisterAgent(RegisterAgentTypeRequest{type = 1})`.
    func register(_ agentType: String) async throws {
        var request = ProtoWriter()
        request.stringField(1, agentType)
        try await unary("RegisterAgent", request.bytes)
    }

    /// `AddSubscription` of a `TypeSubscription`.
    func subscribe(id: String, topicType: String, agentType: String) async throws {
        try await addSubscription(SubscriptionRecord(id: id, kind: .topicType, topic: topicType, agentType: agentType).encoded)
    }

    /// `AddSubscription` of a `TypePrefixSubscription`.
    func subscribe(id: String, topicTypePrefix: String, agentType: String) async throws {
        try await addSubscription(
            SubscriptionRecord(id: id, kind: .topicTypePrefix, topic: topicTypePrefix, agentType: agentType).encoded)
    }

    /// `AddSubscription(AddSubscriptionRequest{subscription = 1})` with an encoded `Subscription`.
    func addSubscription(_ subscription: [UInt8]) async throws {
        var request = ProtoWriter()
        request.bytesField(1, subscription)
        try await unary("AddSubscription", request.bytes)
    }

    /// `RemoveSubscription(RemoveSubscriptionRequest{id = 1})`.
    func unsubscribe(id: String) async throws {
        var request = ProtoWriter()
        request.stringField(1, id)
        try await unary("RemoveSubscription", request.bytes)
    }

    /// `GetSubscriptions`: every subscription the host holds, sorted by id.
    func subscriptions() async throws -> [SubscriptionRecord] {
        let response = try ProtoFields(try await unary("GetSubscriptions", []))
        return try response.all(1).map { try SubscriptionRecord(ProtoFields($0)) }.sorted { $0.id < $1.id }
    }

    // MARK: Data channel

    /// Sends one `agents.Message`.
    /// - Throws: ``WorkerError`` if the stream no longer accepts messages.
    func send(_ message: [UInt8]) throws {
        guard call.send(MessageBuffer(message)) else {
            throw WorkerError("\(name): the data channel refused a send (\(log.value.summary))")
        }
    }

    /// Publishes a CloudEvent as AutoGen's Python worker does (JSON in `binary_data`); returns
    /// the bytes sent.
    @discardableResult
    func publish(
        topicType: String, source: String, id: String = UUID().uuidString, json: String = "{}",
        dataSchema: String = "Note"
    ) throws -> [UInt8] {
        let message = DataMessageBuilder.cloudEvent(
            id: id, topicType: topicType, topicSource: source,
            attributes: DataMessageBuilder.pythonAttributes(dataSchema: dataSchema), binaryData: Array(json.utf8))
        try send(message)
        return message
    }

    /// Sends an RpcRequest to `target`; returns the bytes sent.
    @discardableResult
    func request(
        id: String, target: AgentRef, method: String = "handle", payload: Payload = .json("Ask", "{}"),
        source: AgentRef? = nil, metadata: [(String, String)] = []
    ) throws -> [UInt8] {
        let message = DataMessageBuilder.request(
            id: id, source: source, target: target, method: method, payload: payload, metadata: metadata)
        try send(message)
        return message
    }

    /// Sends an RpcResponse to a request this worker received; returns the bytes sent.
    @discardableResult
    func respond(
        to requestID: String, payload: Payload? = .json("Answer", "{}"), error: String = "",
        metadata: [(String, String)] = []
    ) throws -> [UInt8] {
        let message = DataMessageBuilder.response(id: requestID, payload: payload, error: error, metadata: metadata)
        try send(message)
        return message
    }

    /// Waits until `predicate` holds for what this worker received.
    /// - Throws: ``WorkerError`` naming `what` and what arrived, when `timeout` passes first.
    @discardableResult
    func waitFor(
        _ what: String, timeout: Duration = .seconds(10), until predicate: @escaping @Sendable (DataLog) -> Bool
    ) async throws -> DataLog {
        guard let log = await log.wait(timeout: timeout, until: predicate) else {
            throw WorkerError("\(name): no \(what) within \(timeout); received \(log.value.summary)")
        }
        return log
    }

    /// Waits for the first request whose payload says `text` (or any request, when nil).
    func waitForRequest(saying text: String? = nil, timeout: Duration = .seconds(10)) async throws -> ReceivedRequest {
        let matches: @Sendable (ReceivedRequest) -> Bool = { text == nil || $0.payload?.text == text }
        let log = try await waitFor("request\(text.map { " saying \($0)" } ?? "")", timeout: timeout) {
            $0.requests.contains(where: matches)
        }
        return log.requests.first(where: matches)!
    }

    /// Waits for the first response carrying `requestID`.
    func waitForResponse(to requestID: String, timeout: Duration = .seconds(10)) async throws -> ReceivedResponse {
        let log = try await waitFor("response to request \(requestID)", timeout: timeout) {
            $0.responses.contains { $0.requestID == requestID }
        }
        return log.responses.first { $0.requestID == requestID }!
    }

    /// Makes this worker's stream catch up with everything `sender` has sent so far, and returns
    /// what this worker received by then.
    ///
    /// `sender` sends an RPC request to `agentType` (which this worker serves) and this waits
    /// until it arrives. The host handles one stream's messages in order and each stream
    /// delivers in order, so anything `sender` sent earlier that the host routed here has
    /// arrived by then: a check that something did *not* arrive cannot pass just because it had
    /// not arrived yet.
    @discardableResult
    func catchUp(with sender: RawWorker, agentType: String) async throws -> DataLog {
        let marker = "catch-up-\(UUID().uuidString)"
        try sender.request(id: marker, target: AgentRef(agentType, "catch-up"), payload: .json("CatchUp", marker))
        return try await waitFor("catch-up request from \(sender.name)") {
            $0.requests.contains { $0.payload?.text == marker }
        }
    }

    /// Confirms to the host (acknowledged stream) that the first `count` events it sent arrived.
    func confirm(_ count: UInt64) throws {
        try send(Delivery.acknowledgement(count: count))
    }

    /// Ends the stream the polite way (half-close; the host then finishes it) and waits for
    /// its status.
    func endStream() async throws -> Status {
        call.halfClose()
        return try await waitFor("end of the stream") { $0.status != nil }.status!
    }

    /// Drops the connection (cancels every call and closes the channel), as a crashing
    /// worker does.
    func disconnect() async {
        await channel.shutdown()
    }
}
