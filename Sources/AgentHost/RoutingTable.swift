import AgentCore
import DequeModule
import Synchronization

/// The host's state: which client serves which agent type, the subscriptions, the open data
/// and control channels, and the RPCs waiting for an answer. One lock guards it; every
/// operation holds it for a few dictionary lookups, never while sending.
final class RoutingTable: Sendable {
    struct PendingRequest: Sendable {
        var caller: WorkerConnection
        var originalRequestID: String
        var targetClientID: String
        /// The agent addressed (formatted only for error answers and log lines).
        var target: AgentID
        var deadline: ContinuousClock.Instant
    }

    private struct Client {
        var data: WorkerConnection?
        var control: WorkerConnection?
        var agentTypes: Set<String> = []
        var subscriptionIDs: Set<String> = []
        /// Host request ids of RPCs this client must answer.
        var pendingAsTarget: Set<UInt64> = []
    }

    private struct State: ~Copyable {
        var clients: [String: Client] = [:]
        var agentTypeOwners: [String: String] = [:]
        var subscriptions = SubscriptionIndex()
        var subscriptionOwners: [String: String] = [:]
        /// Topic type → the data channels it reaches; rebuilt lazily after any change.
        var recipients: [String: [WorkerConnection]] = [:]
        var pending: [UInt64: PendingRequest] = [:]
        var deadlines = DeadlineQueue<UInt64>()
        var nextRequestID: UInt64 = 1
    }

    private let state = Mutex(State())

    // MARK: Channels

    /// Records a client's data channel; returns the one it replaces (a reconnect under the
    /// same client id), which the caller should end.
    func attachData(_ connection: WorkerConnection) -> WorkerConnection? {
        state.withLock { state in
            let previous = state.clients[connection.clientID]?.data
            state.clients[connection.clientID, default: Client()].data = connection
            state.recipients.removeAll(keepingCapacity: true)
            return previous
        }
    }

    func attachControl(_ connection: WorkerConnection) -> WorkerConnection? {
        state.withLock { state in
            let previous = state.clients[connection.clientID]?.control
            state.clients[connection.clientID, default: Client()].control = connection
            return previous
        }
    }

    /// What a client's departure removed, for logs and for answering its callers.
    struct Departure: Sendable {
        var agentTypes: [String] = []
        var subscriptionCount = 0
        /// RPCs it had not answered: their callers get an error.
        var unanswered: [PendingRequest] = []
    }

    /// Forgets a client whose data channel `connection` ended: its agent types, its
    /// subscriptions and its unanswered requests. Nothing happens if a newer channel of the
    /// same client replaced it.
    func detachData(_ connection: WorkerConnection) -> Departure? {
        state.withLock { state -> Departure? in
            guard let client = state.clients[connection.clientID], client.data === connection else { return nil }
            var departure = Departure()
            departure.agentTypes = client.agentTypes.sorted()
            for type in client.agentTypes where state.agentTypeOwners[type] == connection.clientID {
                state.agentTypeOwners[type] = nil
            }
            for id in client.subscriptionIDs {
                state.subscriptions.remove(id: id)
                state.subscriptionOwners[id] = nil
            }
            departure.subscriptionCount = client.subscriptionIDs.count
            for id in client.pendingAsTarget {
                state.deadlines.cancel(id)
                if let request = state.pending.removeValue(forKey: id) { departure.unanswered.append(request) }
            }
            if let control = client.control {
                // The control channel outlives nothing: keep only it.
                state.clients[connection.clientID] = Client(control: control)
            } else {
                state.clients[connection.clientID] = nil
            }
            state.recipients.removeAll(keepingCapacity: true)
            return departure
        }
    }

    func detachControl(_ connection: WorkerConnection) {
        state.withLock { state in
            guard state.clients[connection.clientID]?.control === connection else { return }
            state.clients[connection.clientID]?.control = nil
            if let client = state.clients[connection.clientID], client.data == nil, client.agentTypes.isEmpty,
               client.subscriptionIDs.isEmpty {
                state.clients[connection.clientID] = nil
            }
        }
    }

    // MARK: Agent types

    enum RegistrationResult: Sendable {
        case registered
        case alreadyRegisteredBySameClient
        case takenBy(String)
    }

    func register(agentType: String, clientID: String) -> RegistrationResult {
        state.withLock { state in
            if let owner = state.agentTypeOwners[agentType] {
                return owner == clientID ? .alreadyRegisteredBySameClient : .takenBy(owner)
            }
            state.agentTypeOwners[agentType] = clientID
            state.clients[clientID, default: Client()].agentTypes.insert(agentType)
            state.recipients.removeAll(keepingCapacity: true)
            return .registered
        }
    }

    // MARK: Subscriptions

    func addSubscription(_ subscription: Subscription, clientID: String) throws(SubscriptionError) {
        try state.withLock { (state) throws(SubscriptionError) -> Void in
            try state.subscriptions.insert(subscription)
            state.subscriptionOwners[subscription.id] = clientID
            state.clients[clientID, default: Client()].subscriptionIDs.insert(subscription.id)
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    func removeSubscription(id: String, clientID: String) throws(SubscriptionError) {
        try state.withLock { (state) throws(SubscriptionError) -> Void in
            guard let owner = state.subscriptionOwners[id] else {
                throw SubscriptionError(.unknownID, "no subscription has id '\(id)'")
            }
            guard owner == clientID else {
                throw SubscriptionError(.notOwner, "subscription '\(id)' was added by another client; only it may remove it")
            }
            state.subscriptions.remove(id: id)
            state.subscriptionOwners[id] = nil
            state.clients[clientID]?.subscriptionIDs.remove(id)
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    func allSubscriptions() -> [Subscription] {
        state.withLock { state in state.subscriptions.byID.values.sorted { $0.id < $1.id } }
    }

    // MARK: Routing

    /// The data channels serving an agent type subscribed to `topicType`, each once.
    func recipients(ofTopicType topicType: String) -> [WorkerConnection] {
        state.withLock { state in
            if let cached = state.recipients[topicType] { return cached }
            var seen = Set<String>()
            var result: [WorkerConnection] = []
            for agentType in state.subscriptions.agentTypes(matching: topicType) {
                guard let owner = state.agentTypeOwners[agentType], seen.insert(owner).inserted,
                      let connection = state.clients[owner]?.data else { continue }
                result.append(connection)
            }
            // A topic type nobody serves is cached too (an empty list), but the cache is
            // bounded so that a stream of distinct topic types cannot grow it without end.
            if state.recipients.count >= 65_536 { state.recipients.removeAll(keepingCapacity: true) }
            state.recipients[topicType] = result
            return result
        }
    }

    enum RequestRoute: Sendable {
        /// Forward with this host request id to this connection.
        case forward(UInt64, WorkerConnection)
        case unknownAgentType
        /// The owner registered the type but has no data channel open.
        case ownerNotConnected(String)
    }

    /// Records an RPC from `caller` to `targetType` and picks where it goes.
    func routeRequest(from caller: WorkerConnection, requestID: String, target: AgentID,
                      deadline: ContinuousClock.Instant) -> RequestRoute {
        state.withLock { state in
            guard let owner = state.agentTypeOwners[target.type] else { return .unknownAgentType }
            guard let connection = state.clients[owner]?.data else { return .ownerNotConnected(owner) }
            let id = state.nextRequestID
            state.nextRequestID += 1
            state.pending[id] = PendingRequest(
                caller: caller, originalRequestID: requestID,
                targetClientID: owner, target: target, deadline: deadline)
            state.clients[owner]?.pendingAsTarget.insert(id)
            state.deadlines.schedule(id, at: deadline)
            return .forward(id, connection)
        }
    }

    enum ResponseRoute: Sendable {
        case deliver(PendingRequest)
        /// No such request is waiting (answered, timed out, or never sent).
        case unknown
        /// The responder is not the client the request was sent to.
        case wrongResponder(PendingRequest)
    }

    /// Matches a response from `responderClientID` to its request.
    func routeResponse(hostRequestID: UInt64, responderClientID: String) -> ResponseRoute {
        state.withLock { state in
            guard let request = state.pending[hostRequestID] else { return .unknown }
            guard request.targetClientID == responderClientID else { return .wrongResponder(request) }
            state.pending[hostRequestID] = nil
            state.deadlines.cancel(hostRequestID)
            state.clients[responderClientID]?.pendingAsTarget.remove(hostRequestID)
            return .deliver(request)
        }
    }

    /// Removes and returns the requests whose deadline has passed.
    func expiredRequests(now: ContinuousClock.Instant) -> [PendingRequest] {
        state.withLock { state in
            state.deadlines.removeExpired(now: now).compactMap { id in
                guard let request = state.pending.removeValue(forKey: id) else { return nil }
                state.clients[request.targetClientID]?.pendingAsTarget.remove(id)
                return request
            }
        }
    }

    /// Removes and returns every pending request (host shutdown).
    func drainPending() -> [PendingRequest] {
        state.withLock { state in
            defer {
                state.pending.removeAll()
                _ = state.deadlines.removeAll()
            }
            return Array(state.pending.values)
        }
    }

    // MARK: Control channel

    /// The control channel a `destination` (`agentid=type/key` or `clientid=ID`) reaches.
    func controlChannel(forDestination destination: String) -> WorkerConnection? {
        state.withLock { state in
            if destination.hasPrefix("clientid=") {
                return state.clients[String(destination.dropFirst("clientid=".count))]?.control
            }
            if destination.hasPrefix("agentid="), let id = AgentID(destination.dropFirst("agentid=".count)),
               let owner = state.agentTypeOwners[id.type] {
                return state.clients[owner]?.control
            }
            return nil
        }
    }

    /// All open data and control channels (shutdown).
    func allConnections() -> [WorkerConnection] {
        state.withLock { state in state.clients.values.flatMap { [$0.data, $0.control].compactMap { $0 } } }
    }
}
