import GRPCTransport

/// One worker's open data channel (`OpenChannel`): where the host sends it events, requests
/// and responses.
final class WorkerConnection: Sendable, CustomStringConvertible {
    /// The worker's `client-id` metadata.
    let clientID: String
    /// The peer address, for log lines.
    let peer: String
    let call: ServerCall

    init(clientID: String, call: ServerCall) {
        self.clientID = clientID
        self.call = call
        self.peer = call.peer
    }

    /// Sends a message (the same bytes may go to many connections without a copy).
    @inline(__always)
    func send(_ message: MessageBuffer) -> Bool { call.send(message) }

    var description: String { "client \(clientID) (\(peer))" }
}
