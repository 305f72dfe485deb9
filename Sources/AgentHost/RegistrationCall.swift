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
        if call.method == "/agents.AgentRpc/RegisterAgent", call.metadata[Placement.sharedMetadataKey] == "1" {
            registerShared(call, message)
            return
        }
        if call.method == "/agents.AgentRpc/RegisterAgent", let cluster = host.cluster {
            registerInCluster(call, message, cluster)
            return
        }
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
        finish(call, result)
    }

    func callDidEnd(_ call: ServerCall, cancelled: Bool) {
        host.identities.end(clientID)
    }

    private func finish(_ call: ServerCall, _ result: Result<[UInt8], HostCallError>) {
        switch result {
        case .success(let response): call.respond(MessageBuffer(response))
        case .failure(let error):
            host.logger.warning("request refused", metadata: [
                "client.id": "\(clientID)", "grpc.method": "\(call.method)", "error": "\(error.status)",
            ])
            call.finish(error.status)
        }
    }

    /// `RegisterAgent` in a cluster: registered here first (refused at once if another client
    /// holds the type, here or on a host this one knows), then claimed cluster-wide; answered
    /// once the claim is decided. While NATS cannot be reached the type is served here and
    /// claimed when it is back.
    private func registerInCluster(_ call: ServerCall, _ message: MessageBuffer, _ cluster: ClusterMember) {
        let type: String
        do {
            type = try message.withUnsafeBytes { bytes in
                let type = try ControlPlaneCodec.decodeRegisterAgentTypeRequest(bytes)
                try Self.register(type, clientID: self.clientID, in: self.host)
                return type
            }
        } catch let error as HostCallError {
            finish(call, .failure(error))
            return
        } catch {
            finish(call, .failure(HostCallError(.invalidArgument, "malformed request: \(error)")))
            return
        }
        let host = self.host
        let clientID = self.clientID
        Task {
            let result: Result<[UInt8], HostCallError>
            switch await cluster.claim(type: type, client: clientID) {
            case .claimed:
                host.logger.info("agent type registered", metadata: ["client.id": "\(clientID)", "agent.type": "\(type)"])
                result = .success(ControlPlaneCodec.encodeRegisterAgentTypeResponse())
            case .deferred(let reason):
                host.logger.warning("agent type registered on this host only until the cluster can be reached", metadata: [
                    "client.id": "\(clientID)", "agent.type": "\(type)", "reason": "\(reason)",
                ])
                result = .success(ControlPlaneCodec.encodeRegisterAgentTypeResponse())
            case .heldBy(let holder):
                host.table.unregister(agentType: type, clientID: clientID)
                _ = host.table.setRemoteOwner(agentType: type, host: holder.host, client: holder.client)
                result = .failure(HostCallError(.invalidArgument, "Agent type \(type) is already registered by another client, on host \(holder.host)."))
            }
            self.finish(call, result)
        }
    }

    /// `RegisterAgent` of a type the worker serves as shared (metadata `agentd-shared: 1`): one
    /// more worker of it; every worker of the type is told who serves it now.
    private func registerShared(_ call: ServerCall, _ message: MessageBuffer) {
        let result: Result<[UInt8], HostCallError> = message.withUnsafeBytes { bytes in
            do {
                let type = try ControlPlaneCodec.decodeRegisterAgentTypeRequest(bytes)
                try Self.checkLength(ofAgentType: type)
                guard AgentID.isValidType(type) else {
                    throw HostCallError(.invalidArgument, "Invalid agent type '\(type)': use letters, digits, '_', '-' and '.' only.")
                }
                let host = self.host, clientID = self.clientID
                switch host.changingRecipients({ host.table.register(agentType: type, clientID: clientID, shared: true) }) {
                case .joinedShared(let shared):
                    host.logger.info("shared agent type registered", metadata: ["client.id": "\(clientID)", "agent.type": "\(type)"])
                    host.cluster?.sharedMemberJoined(type: type, client: clientID)
                    host.announce(shared)
                case .alreadyRegisteredBySameClient, .registered:
                    break
                case .tooManyTypes:
                    throw Self.tooManyTypes(type)
                case .tooManyClientsWithoutChannel:
                    throw Self.tooManyWithoutChannel(type)
                case .takenBy, .takenOnHost, .sharingMismatch:
                    throw HostCallError(.invalidArgument, "Agent type \(type) is already registered by another client, not shared.")
                }
                return .success(ControlPlaneCodec.encodeRegisterAgentTypeResponse())
            } catch let error as HostCallError {
                return .failure(error)
            } catch {
                return .failure(HostCallError(.invalidArgument, "malformed request: \(error)"))
            }
        }
        finish(call, result)
    }

    /// Registers `type` for `clientID` in the host's table; throws the refusal.
    private static func register(_ type: String, clientID: String, in host: AgentHost) throws(HostCallError) {
        try checkLength(ofAgentType: type)
        guard AgentID.isValidType(type) else {
            throw HostCallError(.invalidArgument, "Invalid agent type '\(type)': use letters, digits, '_', '-' and '.' only.")
        }
        switch host.changingRecipients({ host.table.register(agentType: type, clientID: clientID) }) {
        case .registered, .alreadyRegisteredBySameClient, .joinedShared:
            break
        case .tooManyTypes:
            throw tooManyTypes(type)
        case .tooManyClientsWithoutChannel:
            throw tooManyWithoutChannel(type)
        case .sharingMismatch:
            throw HostCallError(.invalidArgument, "Agent type \(type) is shared by other clients; register it as shared too, or use another type.")
        case .takenBy:
            // Never the holder's client id: a caller that knew it could try to act under it.
            throw HostCallError(.invalidArgument, "Agent type \(type) is already registered by another client.")
        case .takenOnHost(_, let holderHost):
            throw HostCallError(.invalidArgument, "Agent type \(type) is already registered by another client, on host \(holderHost).")
        }
    }

    private static func tooManyTypes(_ type: String) -> HostCallError {
        HostCallError(.resourceExhausted, "Agent type \(type) refused: this client serves \(RoutingTable.maxAgentTypesPerClient) agent types already, the most the host allows one client.")
    }

    private static func tooManyWithoutChannel(_ type: String) -> HostCallError {
        HostCallError(.resourceExhausted, "Agent type \(type) refused: \(RoutingTable.withoutChannelRefusal).")
    }

    /// Refuses an agent type over ``FieldLimits/agentType``.
    private static func checkLength(ofAgentType type: String) throws(HostCallError) {
        do throws(FieldLimits.Violation) {
            try FieldLimits.check(type, "RegisterAgentTypeRequest.type", limit: FieldLimits.agentType)
        } catch {
            throw HostCallError(.invalidArgument, "Agent type refused: \(error).")
        }
    }

    /// `RegisterAgentTypeRequest` → `RegisterAgentTypeResponse`.
    private func registerAgent(_ bytes: UnsafeRawBufferPointer) throws -> [UInt8] {
        let type = try ControlPlaneCodec.decodeRegisterAgentTypeRequest(bytes)
        try Self.register(type, clientID: clientID, in: host)
        host.logger.info("agent type registered", metadata: ["client.id": "\(clientID)", "agent.type": "\(type)"])
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
        if let violation = FieldLimits.violation(in: subscription) {
            throw HostCallError(.invalidArgument, "Subscription refused: \(violation).")
        }
        do {
            let host = self.host, clientID = self.clientID
            try host.changingRecipients { () throws(SubscriptionError) in
                try host.table.addSubscription(subscription, clientID: clientID)
            }
        } catch {
            throw HostCallError(error)
        }
        host.cluster?.subscriptionAdded(subscription)
        host.logger.info("subscription added", metadata: ["client.id": "\(clientID)", "subscription": "\(subscription)"])
        return ControlPlaneCodec.encodeAddSubscriptionResponse()
    }

    /// `RemoveSubscriptionRequest` → `RemoveSubscriptionResponse`.
    private func removeSubscription(_ bytes: UnsafeRawBufferPointer) throws -> [UInt8] {
        let id = try ControlPlaneCodec.decodeRemoveSubscriptionRequest(bytes)
        guard id.utf8.count <= FieldLimits.subscriptionID else {
            throw HostCallError(.invalidArgument, "RemoveSubscription refused: \(FieldLimits.Violation(field: "RemoveSubscriptionRequest.id", bytes: id.utf8.count, limit: FieldLimits.subscriptionID)).")
        }
        do {
            try host.table.removeSubscription(id: id, clientID: clientID)
        } catch {
            throw HostCallError(error)
        }
        host.cluster?.subscriptionRemoved(id: id)
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
        case .limit: status = Status(.resourceExhausted, error.message)
        }
    }
}
