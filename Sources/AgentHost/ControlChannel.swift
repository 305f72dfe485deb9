import AgentWire
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
        if let replaced = host.table.attachControl(connection) {
            replaced.call.finish(Status(.aborted, "replaced by a newer control channel with the same client-id"))
        }
    }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        message.withUnsafeBytes { bytes in
            let header: ControlHeader
            do {
                header = try ControlHeader(bytes)
            } catch {
                logger.warning("malformed control message dropped", metadata: ["error": "\(error)"])
                return
            }
            if bytes.count <= host.configuration.maxMessageBytes,
               let destination = host.table.controlChannel(forDestination: header.destination) {
                _ = destination.send(message)
                return
            }
            let reason = bytes.count > host.configuration.maxMessageBytes
                ? "the control message is \(bytes.count) bytes, over the host's limit of \(host.configuration.maxMessageBytes)"
                : "no control channel serves destination '\(header.destination)'"
            logger.warning("control message not delivered", metadata: [
                "destination": "\(header.destination)", "reason": "\(reason)", "type": "\(header.typeURL)",
            ])
            if let answer = header.errorAnswer(reason, to: connection.clientID) {
                _ = connection.send(MessageBuffer(answer))
            }
        }
    }

    func callDidHalfClose(_ call: ServerCall) { call.finish(.ok) }

    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        host.table.detachControl(connection)
    }
}

/// The routing fields of a `ControlMessage{rpc_id = 1, destination = 2, respond_to = 3,
/// rpcMessage = 4 (Any{type_url = 1, value = 2})}`.
struct ControlHeader {
    var rpcID = ""
    var destination = ""
    var typeURL = ""

    init(_ bytes: UnsafeRawBufferPointer) throws {
        var reader = ProtoReader(bytes)
        while let field = try reader.next() {
            switch field.number {
            case 1: rpcID = reader.string(try field.bytesRange())
            case 2: destination = reader.string(try field.bytesRange())
            case 4:
                var any = ProtoReader(bytes, range: try field.bytesRange())
                while let part = try any.next() {
                    if part.number == 1 { typeURL = any.string(try part.bytesRange()) }
                }
            default: continue
            }
        }
    }

    /// An error answer for a request that could not be delivered: a `SaveStateResponse`
    /// (`error = 2`) or `LoadStateResponse` (`error = 1`) with the reason. Nil for anything
    /// else (responses are not answered).
    func errorAnswer(_ reason: String, to clientID: String) -> [UInt8]? {
        let (responseType, errorField): (String, Int)
        switch typeURL.split(separator: "/").last.map(String.init) {
        case "agents.SaveStateRequest": (responseType, errorField) = ("agents.SaveStateResponse", 2)
        case "agents.LoadStateRequest": (responseType, errorField) = ("agents.LoadStateResponse", 1)
        default: return nil
        }
        var message = ProtoWriter()
        message.stringField(1, rpcID)
        message.stringField(2, "clientid=\(clientID)")
        message.messageField(4) { any in
            any.stringField(1, "type.googleapis.com/\(responseType)")
            any.messageField(2) { $0.stringField(errorField, reason) }
        }
        return message.bytes
    }
}
