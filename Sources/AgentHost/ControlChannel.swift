import AgentCore
import GRPCTransport
import Logging

/// One worker's `OpenControlChannel` stream: state save/load messages, routed by destination
/// (`agentid=type/key` to the client serving that type, `clientid=ID` to that client) and
/// forwarded unchanged.
final class ControlChannel: ServerCallHandler {
    let host: AgentHost
    let connection: WorkerConnection
    private let logger: Logger

    init(host: AgentHost, connection: WorkerConnection) {
        self.host = host
        self.connection = connection
        var logger = host.logger
        logger[metadataKey: "client.id"] = "\(connection.clientID)"
        self.logger = logger
    }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        message.withUnsafeBytes { bytes in
            let header: ControlPlaneCodec.ControlMessageHeader
            do {
                header = try ControlPlaneCodec.decodeControlMessageHeader(bytes)
            } catch {
                logger.warning("malformed control message dropped", metadata: ["error": "\(error)"])
                return
            }
            if bytes.count <= host.configuration.maxMessageBytes {
                switch host.table.controlRoute(forDestination: header.destination) {
                case .local(let destination):
                    _ = destination.send(message)
                    return
                case .host(let owner):
                    if host.cluster?.forwardControl(bytes, destination: header.destination, host: owner) == true { return }
                case .none:
                    if let cluster = host.cluster, cluster.forwardControl(bytes, destination: header.destination, host: nil) { return }
                }
            }
            let reason = bytes.count > host.configuration.maxMessageBytes
                ? "the control message is \(bytes.count) bytes, over the host's limit of \(host.configuration.maxMessageBytes)"
                : "no control channel serves destination '\(header.destination)'"
            logger.warning("control message not delivered", metadata: [
                "destination": "\(header.destination)", "reason": "\(reason)", "type": "\(header.typeURL)",
            ])
            if let answer = ControlPlaneCodec.errorResponse(
                to: header, error: reason, destination: "clientid=\(connection.clientID)") {
                _ = connection.send(MessageBuffer(answer))
            }
        }
    }

    func callDidHalfClose(_ call: ServerCall) { call.finish(.ok) }

    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        host.table.detachControl(connection)
        host.identities.end(connection.clientID)
    }
}
