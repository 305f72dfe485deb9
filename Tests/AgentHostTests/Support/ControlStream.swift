import AgentTestSupport
import Foundation
import GRPCTransport

/// Everything a worker received on its control channel, in arrival order.
struct ControlLog: Sendable {
    var messages: [ControlMessage] = []
    /// Messages that were not a readable `ControlMessage` (a host bug if any).
    var unreadable: [[UInt8]] = []
    var status: Status?
    /// The host answered the readiness probe: it serves this stream.
    var isReady = false
}

/// Records a control channel's messages (on the channel's poller thread).
final class ControlStreamRecorder: ClientCallHandler {
    let log = AsyncCondition(ControlLog())

    func call(_ call: ClientCall, didReceive message: MessageBuffer) {
        let bytes = message.bytes
        guard let received = try? ControlMessage(received: bytes) else {
            log.mutate { $0.unreadable.append(bytes) }
            return
        }
        if received.rpcID == ControlStream.readinessProbeID {
            log.mutate { $0.isReady = true }
        } else {
            log.mutate { $0.messages.append(received) }
        }
    }

    func call(_ call: ClientCall, didFinishWith status: Status, trailers: Metadata) {
        log.mutate { $0.status = status }
    }
}

/// A worker's `OpenControlChannel` stream, opened on the worker's connection with its
/// `client-id`.
final class ControlStream: Sendable {
    /// The rpc_id of the probe ``open(for:)`` sends: a SaveStateRequest to a client that does
    /// not exist, which the host answers at once with an error.
    static let readinessProbeID = "control-stream-readiness-probe"

    let worker: RawWorker
    let call: ClientCall
    private let recorder: ControlStreamRecorder

    var log: AsyncCondition<ControlLog> { recorder.log }

    private init(worker: RawWorker, call: ClientCall, recorder: ControlStreamRecorder) {
        self.worker = worker
        self.call = call
        self.recorder = recorder
    }

    /// Opens `worker`'s control channel and returns once the host serves it.
    static func open(for worker: RawWorker) async throws -> ControlStream {
        let recorder = ControlStreamRecorder()
        let call = try worker.channel.makeStreamingCall(
            method: "/agents.AgentRpc/OpenControlChannel", metadata: worker.metadata, waitForReady: true,
            handler: recorder)
        let stream = ControlStream(worker: worker, call: call, recorder: recorder)
        try stream.send(ControlMessage(
            rpcID: readinessProbeID, destination: "clientid=control-stream-nobody",
            rpcMessage: ControlMessage.saveStateRequest(AgentRef("nobody", "probe"))))
        let log = try await stream.waitFor("the host to serve the control channel") { $0.isReady || $0.status != nil }
        if let status = log.status {
            throw WorkerError("\(worker.name): the host ended the control channel at once: \(status)")
        }
        return stream
    }

    func send(_ message: ControlMessage) throws {
        guard call.send(MessageBuffer(message.bytes)) else {
            throw WorkerError("\(worker.name): the control channel refused a send")
        }
    }

    @discardableResult
    func waitFor(
        _ what: String, timeout: Duration = .seconds(10), until predicate: @escaping @Sendable (ControlLog) -> Bool
    ) async throws -> ControlLog {
        guard let log = await log.wait(timeout: timeout, until: predicate) else {
            let value = log.value
            throw WorkerError(
                "\(worker.name): no \(what) on the control channel within \(timeout); received \(value.messages.count) messages \(value.messages.map(\.rpcID))\(value.status.map { ", ended \($0)" } ?? "")")
        }
        return log
    }

    /// Waits for the first message with `rpcID`.
    func waitForMessage(rpcID: String) async throws -> ControlMessage {
        let log = try await waitFor("message with rpc_id \(rpcID)") { $0.messages.contains { $0.rpcID == rpcID } }
        return log.messages.first { $0.rpcID == rpcID }!
    }
}
