import GRPCTransport

/// Who sent a request, and so where its answer goes: a worker connected to this host, or
/// another host of the cluster (which hands the answer to its worker).
enum Caller: Sendable, CustomStringConvertible {
    case worker(WorkerConnection)
    case peer(PeerCaller)

    var description: String {
        switch self {
        case .worker(let connection): "\(connection)"
        case .peer(let peer): "host \(peer.host)"
        }
    }
}

/// A request that came from another host of the cluster: the answer goes to `replySubject`.
struct PeerCaller: Sendable {
    /// The calling host's cluster name.
    var host: String
    var replySubject: String
}
