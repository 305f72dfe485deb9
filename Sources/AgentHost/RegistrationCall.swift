import AgentCore
import GRPCTransport
import Logging

/// The unary calls `RegisterAgent`, `AddSubscription`, `RemoveSubscription` and
/// `GetSubscriptions`: each answers its one request.
final class RegistrationCall: ServerCallHandler {
    let host: AgentHost
    let clientID: String

    init(host: AgentHost, clientID: String) {
        self.host = host
        self.clientID = clientID
    }

    func call(_ call: ServerCall, didReceive message: MessageBuffer) {
        let result: Result<[UInt8], HostCallError> = message.withUnsafeBytes { bytes in
            do {
                switch call.method {
                case "/agents.AgentRpc/RegisterAgent": return .success(try registerAgent(bytes))
                case "/agents.AgentRpc/AddSubscription": return .success(try addSubscription(bytes))
                case "/agents.AgentRpc/RemoveSubscription": return .success(try removeSubscription(bytes))
                default: return .success(getSubscriptions())
                }
            } catch let error as HostCallError {
                return .failure(error)
            } catch {
                return .failure(HostCallError(.invalidArgument, "malformed request: \(error)"))
            }
        }
        switch result {
        case .success(let response): call.respond(MessageBuffer(response))
        case .failure(let error):
            host.logger.warning("request refused", metadata: [
                "client.id": "\(clientID)", "grpc.method": "\(call.method)", "error": "\(error.status)",
            ])
            call.finish(error.status)
        }
    }

    /// `RegisterAgentTypeRequest` → `RegisterAgentTypeResponse`.
    private func registerAgent(_ bytes: UnsafeRawBufferPointer) throws -> [UInt8] {
        let type = try ControlPlaneCodec.decodeRegisterAgentTypeRequest(bytes)
        guard AgentID.isValidType(type) else {
            throw HostCallError(.invalidArgument, "Invalid agent type '\(type)': use letters, digits, '_', '-' and '.' only.")
        }
        switch host.table.register(agentType: type, clientID: clientID) {
        case .registered:
            host.logger.info("agent type registered", metadata: ["client.id": "\(clientID)", "agent.type": "\(type)"])
        case .alreadyRegisteredBySameClient:
            break
        case .takenBy(let owner):
            throw HostCallError(.invalidArgument, "Agent type \(type) already registered with client \(owner).")
        }
        return ControlPlaneCodec.encodeRegisterAgentTypeResponse()
    }

    /// `AddSubscriptionRequest` → `AddSubscriptionResponse`.
    private func addSubscription(_ bytes: UnsafeRawBufferPointer) throws -> [UInt8] {
        let carried: Subscription?
        do {
            carried = try ControlPlaneCodec.decodeAddSubscriptionRequest(bytes)
        } catch {
            throw HostCallError(error)
        }
        guard let subscription = carried else {
            throw HostCallError(.invalidArgument, "AddSubscription carries no subscription.")
        }
        do {
            try host.table.addSubscription(subscription, clientID: clientID)
        } catch {
            throw HostCallError(error)
        }
        host.logger.info("subscription added", metadata: ["client.id": "\(clientID)", "subscription": "\(subscription)"])
        return ControlPlaneCodec.encodeAddSubscriptionResponse()
    }

    /// `RemoveSubscriptionRequest` → `RemoveSubscriptionResponse`.
    private func removeSubscription(_ bytes: UnsafeRawBufferPointer) throws -> [UInt8] {
        let id = try ControlPlaneCodec.decodeRemoveSubscriptionRequest(bytes)
        do {
            try host.table.removeSubscription(id: id, clientID: clientID)
        } catch {
            throw HostCallError(error)
        }
        host.logger.info("subscription removed", metadata: ["client.id": "\(clientID)", "subscription.id": "\(id)"])
        return ControlPlaneCodec.encodeRemoveSubscriptionResponse()
    }

    /// `GetSubscriptionsResponse`: every client's subscriptions.
    private func getSubscriptions() -> [UInt8] {
        ControlPlaneCodec.encodeGetSubscriptionsResponse(host.table.allSubscriptions())
    }
}

/// A refusal of a registration call: the status sent back.
struct HostCallError: Error {
    var status: Status

    init(_ code: StatusCode, _ message: String) { status = Status(code, message) }

    init(_ error: SubscriptionError) {
        switch error.code {
        case .invalid: status = Status(.invalidArgument, error.message)
        case .duplicate: status = Status(.alreadyExists, error.message)
        case .unknownID: status = Status(.notFound, error.message)
        case .notOwner: status = Status(.permissionDenied, error.message)
        }
    }
}
