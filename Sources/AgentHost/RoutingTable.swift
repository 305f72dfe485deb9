import AgentCore
import DequeModule
import Synchronization

/// The host's state: which client serves which agent type, the subscriptions, the open data
/// and control channels, and the RPCs waiting for an answer. One lock guards it; every
/// operation holds it for a few dictionary lookups, never while sending.
final class RoutingTable: Sendable {
    struct PendingRequest: Sendable {
        var caller: Caller
        var originalRequestID: String
        var responder: Responder
        /// The agent addressed (formatted only for error answers and log lines).
        var target: AgentID
        var deadline: ContinuousClock.Instant
    }

    /// The RPCs waiting for an answer, by host request id, and how many each worker (caller)
    /// has waiting (``RoutingTable/maxPendingPerCaller``). On every RPC's path: the count is
    /// keyed by the caller's connection (a pointer to hash, not a string; a client id has one
    /// data channel at a time), and neither table gives its capacity back when it empties.
    struct PendingRequests: Sequence {
        private var byID: [UInt64: PendingRequest] = [:]
        private var perCaller: [ObjectIdentifier: Int] = [:]

        /// The connection a request counts against (requests from other hosts count against
        /// none). Each request retains its caller's connection, so the identifier is not reused
        /// while it counts.
        private static func callerKey(_ caller: Caller) -> ObjectIdentifier? {
            if case .worker(let connection) = caller { return ObjectIdentifier(connection) }
            return nil
        }

        var count: Int { byID.count }
        var values: Dictionary<UInt64, PendingRequest>.Values { byID.values }
        func makeIterator() -> Dictionary<UInt64, PendingRequest>.Iterator { byID.makeIterator() }

        /// Requests waiting that `caller` made (0 for another host).
        func waiting(from caller: Caller) -> Int { Self.callerKey(caller).map { perCaller[$0] ?? 0 } ?? 0 }

        subscript(id: UInt64) -> PendingRequest? {
            get { byID[id] }
            set {
                if let newValue {
                    precondition(byID.updateValue(newValue, forKey: id) == nil, "a host request id is issued once")
                    if let key = Self.callerKey(newValue.caller) { perCaller[key, default: 0] += 1 }
                } else {
                    _ = removeValue(forKey: id)
                }
            }
        }

        @discardableResult
        mutating func removeValue(forKey id: UInt64) -> PendingRequest? {
            guard let request = byID.removeValue(forKey: id) else { return nil }
            if let key = Self.callerKey(request.caller), let count = perCaller[key] {
                perCaller[key] = count > 1 ? count - 1 : nil
            }
            return request
        }

        mutating func removeAll() {
            byID.removeAll(keepingCapacity: true)
            perCaller.removeAll(keepingCapacity: true)
        }
    }

    private struct Client {
        var data: WorkerConnection?
        var control: WorkerConnection?
        var agentTypes: Set<String> = []
        var subscriptionIDs: Set<String> = []
        /// Host request ids of RPCs this client must answer.
        var pendingAsTarget: Set<UInt64> = []
    }

    /// Who must answer a forwarded request: a worker of this host, or another host of the
    /// cluster (which forwards it to its worker).
    enum Responder: Sendable, Equatable {
        case client(String)
        case host(String)
    }

    /// Where a topic type's events go: data channels of this host, and the other hosts of the
    /// cluster that serve a subscribed agent type (each once; empty without a cluster).
    struct Recipients: Sendable {
        var local: [WorkerConnection] = []
        var hosts: [String] = []
        /// Shared agent types subscribed: each event goes to the one worker its key (the
        /// topic's source) is placed on.
        var shared: [SharedType] = []

        /// Nobody to send to.
        var isEmpty: Bool { local.isEmpty && hosts.isEmpty && shared.isEmpty }
    }

    /// The workers serving a shared agent type, by client id (sorted), with their channels.
    struct SharedType: Sendable {
        var name: String
        /// Every worker serving it, on this host and (in a cluster) on the others.
        var members: [String]
        /// This host's workers of it.
        var connections: [String: WorkerConnection]
        /// The other hosts' workers of it: client id → host.
        var remoteMembers: [String: String] = [:]

        enum Route: Sendable {
            case local(WorkerConnection)
            case host(String)
            case none
        }

        /// Where `key` is placed: one of this host's workers, or another host's.
        func route(forKey key: String) -> Route {
            guard let owner = Placement.owner(type: name, key: key, among: members) else { return .none }
            if let connection = connections[owner] { return .local(connection) }
            if let host = remoteMembers[owner] { return .host(host) }
            return .none
        }

        /// The client `key` is placed on.
        func owner(forKey key: String) -> String? { Placement.owner(type: name, key: key, among: members) }
    }

    private struct State: ~Copyable {
        var clients: [String: Client] = [:]
        var agentTypeOwners: [String: String] = [:]
        /// Shared agent type → the clients serving it (sorted).
        var sharedTypes: [String: [String]] = [:]
        var subscriptions = SubscriptionIndex()
        var subscriptionOwners: [String: String] = [:]
        /// Subscriptions of a shared type that another of its workers made already (same agent
        /// type and topic): kept aside, and put in the index when that one goes.
        var standby: [String: Subscription] = [:]
        /// What the other hosts of the cluster serve (empty without a cluster).
        var remote = RemoteTables()
        /// Topic type → where its events go; rebuilt lazily after any change.
        var recipients = RecipientCache()
        var pending = PendingRequests()
        var deadlines = DeadlineQueue<UInt64>()
        var nextRequestID: UInt64 = 1
        /// Clients that registered agent types or subscriptions with no data channel open, and
        /// since when: what they registered goes if no channel opens within the host's window
        /// (``removeRegistrationsWithoutChannel(since:)``), and at most
        /// ``RoutingTable/maxClientsWithoutChannel`` of them hold registrations at once.
        var withoutChannel: [String: ContinuousClock.Instant] = [:]

        /// Whether `clientID` may register now: it has a data channel, or it is one of the
        /// clients without one already, or there is room for one more (recorded, then).
        mutating func admitRegistration(of clientID: String) -> Bool {
            if clients[clientID]?.data != nil || withoutChannel[clientID] != nil { return true }
            guard withoutChannel.count < RoutingTable.maxClientsWithoutChannel else { return false }
            withoutChannel[clientID] = .now
            return true
        }

        /// Forgets `clientID`'s agent types, subscriptions and the RPCs it was to answer; keeps
        /// its control channel, if any.
        mutating func removeClient(_ clientID: String) -> Departure {
            var departure = Departure()
            guard let client = clients[clientID] else { return departure }
            departure.agentTypes = client.agentTypes.sorted()
            for type in client.agentTypes where agentTypeOwners[type] == clientID {
                agentTypeOwners[type] = nil
            }
            var changedShared: [String] = []
            for type in client.agentTypes {
                guard var members = sharedTypes[type], let index = members.firstIndex(of: clientID) else { continue }
                members.remove(at: index)
                sharedTypes[type] = members.isEmpty ? nil : members
                departure.sharedTypes.append(type)
                if !members.isEmpty { changedShared.append(type) }
            }
            for id in client.subscriptionIDs {
                removeSubscription(id: id)
                subscriptionOwners[id] = nil
            }
            departure.subscriptionIDs = client.subscriptionIDs.sorted()
            for id in client.pendingAsTarget {
                deadlines.cancel(id)
                if let request = pending.removeValue(forKey: id) { departure.unanswered.append((id, request)) }
            }
            if let control = client.control {
                // The control channel outlives nothing: keep only it.
                clients[clientID] = Client(control: control)
            } else {
                clients[clientID] = nil
            }
            subscriptionOwners.shrinkIfSparse()
            clients.shrinkIfSparse()
            recipients.removeAll(keepingCapacity: true)
            departure.sharedChanges = changedShared.compactMap { sharedType($0) }
            return departure
        }

        /// Takes subscription `id` out of the index, putting a standby twin in its place.
        mutating func removeSubscription(id: String) {
            if standby.removeValue(forKey: id) != nil { return }
            guard let removed = subscriptions.remove(id: id) else { return }
            if let twin = standby.values.first(where: { $0.agentType == removed.agentType && $0.kind == removed.kind }) {
                standby[twin.id] = nil
                try? subscriptions.insert(twin)
            }
        }

        /// A shared type's workers and their open data channels.
        func sharedType(_ name: String) -> SharedType? {
            let local = sharedTypes[name] ?? []
            let remote = self.remote.sharedMembers[name] ?? [:]
            guard !local.isEmpty || !remote.isEmpty else { return nil }
            var connections: [String: WorkerConnection] = [:]
            for member in local { connections[member] = clients[member]?.data }
            return SharedType(name: name, members: Set(local).union(remote.keys).sorted(), connections: connections,
                              remoteMembers: remote)
        }

        /// Whether `name` is shared, here or on another host.
        func isShared(_ name: String) -> Bool { sharedTypes[name] != nil || remote.sharedMembers[name] != nil }

        /// Records a request under a new host request id, with its deadline.
        mutating func issue(_ request: PendingRequest) -> UInt64 {
            let id = nextRequestID
            nextRequestID += 1
            pending[id] = request
            deadlines.schedule(id, at: request.deadline)
            return id
        }

        /// Removes and returns the requests waiting for an answer from another host (`host`, or
        /// any when nil).
        mutating func removePending(answeredBy host: String?) -> [PendingRequest] {
            var removed: [PendingRequest] = []
            for (id, request) in pending {
                guard case .host(let name) = request.responder, host == nil || host == name else { continue }
                pending[id] = nil
                deadlines.cancel(id)
                removed.append(request)
            }
            return removed
        }
    }

    /// What the other hosts of a cluster serve, as their key-value entries say.
    struct RemoteTables: Sendable {
        /// Agent type → the host and client holding it.
        var typeOwners: [String: (host: String, client: String)] = [:]
        /// Host → its workers' subscriptions.
        var subscriptions: [String: SubscriptionIndex] = [:]
        /// Shared agent type → its workers on other hosts (client id → host).
        var sharedMembers: [String: [String: String]] = [:]
        /// Host → subscriptions that duplicate an indexed one there (another worker of the same
        /// shared type), by id.
        var standby: [String: [String: Subscription]] = [:]
    }

    private let state = Mutex(State())

    /// The most agent types one client may serve, and the most subscriptions it may hold: with
    /// ``FieldLimits``, what one client can make the host keep (far above what real workers
    /// register: a few dozen).
    static let maxAgentTypesPerClient = 10_000
    static let maxSubscriptionsPerClient = 10_000

    // MARK: Channels

    /// Records a client's data channel, unless the client has one open: a client id serves
    /// one data channel at a time (a reconnecting client gets in once its old one has ended).
    /// - Returns: false if refused.
    func attachData(_ connection: WorkerConnection) -> Bool {
        state.withLock { state in
            guard state.clients[connection.clientID]?.data == nil else { return false }
            state.clients[connection.clientID, default: Client()].data = connection
            state.withoutChannel[connection.clientID] = nil
            state.recipients.removeAll(keepingCapacity: true)
            return true
        }
    }

    /// ``attachData(_:)`` for a control channel.
    func attachControl(_ connection: WorkerConnection) -> Bool {
        state.withLock { state in
            guard state.clients[connection.clientID]?.control == nil else { return false }
            state.clients[connection.clientID, default: Client()].control = connection
            return true
        }
    }

    /// What a client's departure removed, for logs and for answering its callers.
    struct Departure: Sendable {
        var agentTypes: [String] = []
        var subscriptionIDs: [String] = []
        var subscriptionCount: Int { subscriptionIDs.count }
        /// Shared types it served.
        var sharedTypes: [String] = []
        /// Those still served by other workers of this host, with their workers now (to be told).
        var sharedChanges: [SharedType] = []
        /// RPCs it had not answered, with the host request id it was given: their callers get
        /// an error.
        var unanswered: [(id: UInt64, request: PendingRequest)] = []
    }

    /// Forgets a client whose data channel `connection` ended: its agent types, its
    /// subscriptions and its unanswered requests. Nothing happens if a newer channel of the
    /// same client replaced it.
    func detachData(_ connection: WorkerConnection) -> Departure? {
        state.withLock { state -> Departure? in
            guard state.clients[connection.clientID]?.data === connection else { return nil }
            return state.removeClient(connection.clientID)
        }
    }

    /// The most clients that may hold registrations with no data channel open at once.
    static let maxClientsWithoutChannel = 1_024

    /// Why a registration of a client without a data channel is refused when too many hold some.
    static let withoutChannelRefusal = """
        \(maxClientsWithoutChannel) clients hold registrations without an open data channel already, the most the host allows; \
        open this client's channel (OpenChannel) first
        """

    /// Clients holding registrations with no data channel open now.
    var clientsWithoutChannel: Int { state.withLock { $0.withoutChannel.count } }

    /// Forgets what clients registered with no data channel open, for those whose first such
    /// registration came before `cutoff` and that still have none: a peer that registers and
    /// never opens its channel (or whose channel ended) cannot make the host keep it.
    /// - Returns: each such client and what it lost (nothing, for one that had nothing left).
    func removeRegistrationsWithoutChannel(since cutoff: ContinuousClock.Instant) -> [(clientID: String, departure: Departure)] {
        state.withLock { state in
            guard state.withoutChannel.values.contains(where: { $0 < cutoff }) else { return [] }
            var removed: [(clientID: String, departure: Departure)] = []
            for (clientID, since) in state.withoutChannel where since < cutoff {
                state.withoutChannel[clientID] = nil
                guard state.clients[clientID]?.data == nil else { continue }
                removed.append((clientID, state.removeClient(clientID)))
            }
            state.withoutChannel.shrinkIfSparse()
            return removed
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
        /// Another host of the cluster holds the type for another client.
        case takenOnHost(client: String, host: String)
        /// Registered as one more worker of a shared type: the workers serving it now.
        case joinedShared(SharedType)
        /// Shared and not shared at once: the type is served the other way by these clients.
        case sharingMismatch(holders: [String], shared: Bool)
        /// The client serves ``RoutingTable/maxAgentTypesPerClient`` types already.
        case tooManyTypes
        /// The client has no data channel open, and ``RoutingTable/maxClientsWithoutChannel``
        /// other clients without one hold registrations already.
        case tooManyClientsWithoutChannel
    }

    /// Records `clientID` as the owner of `agentType`, unless another client holds it here or
    /// on another host. A type held on another host by the same client id (a worker that moved
    /// to this host) is taken over.
    /// - Parameter shared: the worker serves the type as shared: several workers may, each
    ///   serving the keys placed on it (``Placement``).
    func register(agentType: String, clientID: String, shared: Bool = false) -> RegistrationResult {
        state.withLock { state in
            if let types = state.clients[clientID]?.agentTypes, types.count >= Self.maxAgentTypesPerClient, !types.contains(agentType) {
                return .tooManyTypes
            }
            guard state.admitRegistration(of: clientID) else { return .tooManyClientsWithoutChannel }
            if shared {
                if let owner = state.agentTypeOwners[agentType] { return .sharingMismatch(holders: [owner], shared: false) }
                if let remote = state.remote.typeOwners[agentType] { return .takenOnHost(client: remote.client, host: remote.host) }
                var members = state.sharedTypes[agentType] ?? []
                if members.contains(clientID) { return .alreadyRegisteredBySameClient }
                members.append(clientID)
                members.sort()
                state.sharedTypes[agentType] = members
                state.clients[clientID, default: Client()].agentTypes.insert(agentType)
                state.recipients.removeAll(keepingCapacity: true)
                return .joinedShared(state.sharedType(agentType)!)
            }
            if let shared = state.sharedType(agentType) { return .sharingMismatch(holders: shared.members, shared: true) }
            if let owner = state.agentTypeOwners[agentType] {
                return owner == clientID ? .alreadyRegisteredBySameClient : .takenBy(owner)
            }
            if let remote = state.remote.typeOwners[agentType] {
                guard remote.client == clientID else { return .takenOnHost(client: remote.client, host: remote.host) }
                state.remote.typeOwners[agentType] = nil
            }
            state.agentTypeOwners[agentType] = clientID
            state.clients[clientID, default: Client()].agentTypes.insert(agentType)
            state.recipients.removeAll(keepingCapacity: true)
            return .registered
        }
    }

    /// Undoes a ``register(agentType:clientID:)`` the cluster refused.
    func unregister(agentType: String, clientID: String) {
        state.withLock { state in
            guard state.agentTypeOwners[agentType] == clientID else { return }
            state.agentTypeOwners[agentType] = nil
            state.clients[clientID]?.agentTypes.remove(agentType)
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    // MARK: Subscriptions

    func addSubscription(_ subscription: Subscription, clientID: String) throws(SubscriptionError) {
        try state.withLock { (state) throws(SubscriptionError) -> Void in
            if let held = state.clients[clientID]?.subscriptionIDs.count, held >= Self.maxSubscriptionsPerClient {
                throw SubscriptionError(.limit, "this client holds \(held) subscriptions already, the most the host allows one client")
            }
            guard state.admitRegistration(of: clientID) else {
                throw SubscriptionError(.limit, Self.withoutChannelRefusal)
            }
            do throws(SubscriptionError) {
                try state.subscriptions.insert(subscription)
            } catch {
                guard error.code == .duplicate else { throw error }
                // Each worker of a shared type subscribes it; the first one's is in the index.
                guard state.sharedTypes[subscription.agentType]?.contains(clientID) == true,
                      state.subscriptions.byID[subscription.id] == nil, state.standby[subscription.id] == nil,
                      state.subscriptionOwners[subscription.id] == nil else { throw error }
                state.standby[subscription.id] = subscription
            }
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
            state.removeSubscription(id: id)
            state.subscriptionOwners[id] = nil
            state.subscriptionOwners.shrinkIfSparse()
            state.clients[clientID]?.subscriptionIDs.remove(id)
            state.clients[clientID]?.subscriptionIDs.shrinkIfSparse()
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    /// The subscriptions of this host's clients, and, in a cluster, those of the other hosts'.
    func allSubscriptions() -> [Subscription] {
        state.withLock { state in
            var all = Array(state.subscriptions.byID.values)
            for index in state.remote.subscriptions.values { all.append(contentsOf: index.byID.values) }
            return all.sorted { $0.id < $1.id }
        }
    }

    /// The subscriptions of this host's clients (what it publishes to the cluster).
    func localSubscriptions() -> [Subscription] {
        state.withLock { state in Array(state.subscriptions.byID.values) + Array(state.standby.values) }
    }

    /// The workers serving shared agent type `name`, if it is one.
    func sharedType(_ name: String) -> SharedType? {
        state.withLock { $0.sharedType(name) }
    }

    /// Agent type → client, for the types this host's clients hold.
    func localAgentTypes() -> [String: String] {
        state.withLock { state in state.agentTypeOwners }
    }

    // MARK: The cluster's other hosts

    /// Another host holds `agentType` for `client`. A type this host held until now is given
    /// up (its client moved to that host, or the other host took it while this one was cut off
    /// from the cluster): returns the local client that lost it.
    func setRemoteOwner(agentType: String, host: String, client: String) -> String? {
        state.withLock { state in
            state.remote.typeOwners[agentType] = (host, client)
            state.recipients.removeAll(keepingCapacity: true)
            guard let local = state.agentTypeOwners.removeValue(forKey: agentType) else { return nil }
            state.clients[local]?.agentTypes.remove(agentType)
            return local
        }
    }

    /// The other host holding `agentType`, if another does.
    func remoteOwner(of agentType: String) -> String? {
        state.withLock { $0.remote.typeOwners[agentType]?.host }
    }

    /// `host` no longer holds `agentType`.
    func removeRemoteOwner(agentType: String, host: String) {
        state.withLock { state in
            guard state.remote.typeOwners[agentType]?.host == host else { return }
            state.remote.typeOwners[agentType] = nil
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    /// A subscription of a worker of `host`; replaces one with the same id there.
    func setRemoteSubscription(_ subscription: Subscription, host: String) {
        state.withLock { state in
            removeRemote(id: subscription.id, host: host, in: &state)
            do throws(SubscriptionError) {
                try state.remote.subscriptions[host, default: SubscriptionIndex()].insert(subscription)
            } catch {
                // The same (agent type, topic) from another worker of a shared type there: kept
                // aside, and indexed when the first goes.
                state.remote.standby[host, default: [:]][subscription.id] = subscription
            }
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    func removeRemoteSubscription(id: String, host: String) {
        state.withLock { state in
            removeRemote(id: id, host: host, in: &state)
            state.recipients.removeAll(keepingCapacity: true)
        }
    }

    /// Takes subscription `id` of `host` out (a standby twin takes its place in the index).
    private func removeRemote(id: String, host: String, in state: inout State) {
        if state.remote.standby[host]?.removeValue(forKey: id) != nil { return }
        guard let removed = state.remote.subscriptions[host]?.remove(id: id) else { return }
        if let twin = state.remote.standby[host]?.values.first(where: { $0.agentType == removed.agentType && $0.kind == removed.kind }) {
            state.remote.standby[host]?[twin.id] = nil
            try? state.remote.subscriptions[host]?.insert(twin)
        }
        if state.remote.subscriptions[host]?.count == 0 { state.remote.subscriptions[host] = nil }
        if state.remote.standby[host]?.isEmpty == true { state.remote.standby[host] = nil }
    }

    /// `client` of `host` serves shared type `agentType` (`present`), or no longer does.
    /// - Returns: the type's workers now, when this host has some of them (to be told).
    func setRemoteSharedMember(agentType: String, client: String, host: String, present: Bool) -> SharedType? {
        state.withLock { state in
            var members = state.remote.sharedMembers[agentType] ?? [:]
            if present {
                guard members[client] != host else { return nil }
                members[client] = host
            } else {
                guard members[client] == host else { return nil }
                members[client] = nil
            }
            state.remote.sharedMembers[agentType] = members.isEmpty ? nil : members
            state.recipients.removeAll(keepingCapacity: true)
            return state.sharedTypes[agentType] == nil ? nil : state.sharedType(agentType)
        }
    }

    /// Forgets everything `host` served (it died, or left); returns the requests it had not
    /// answered, for their callers to get an error, and the shared types whose workers changed
    /// (for this host's workers of them to be told).
    func forgetHost(_ host: String) -> (unanswered: [PendingRequest], sharedChanges: [SharedType]) {
        state.withLock { state in
            state.remote.subscriptions[host] = nil
            state.remote.standby[host] = nil
            state.remote.typeOwners = state.remote.typeOwners.filter { $0.value.host != host }
            var changed: [String] = []
            for (type, members) in state.remote.sharedMembers where members.values.contains(host) {
                let kept = members.filter { $0.value != host }
                state.remote.sharedMembers[type] = kept.isEmpty ? nil : kept
                if state.sharedTypes[type] != nil { changed.append(type) }
            }
            state.recipients.removeAll(keepingCapacity: true)
            return (state.removePending(answeredBy: host), changed.compactMap { state.sharedType($0) })
        }
    }

    /// Shared type → this host's clients serving it (what it publishes to the cluster).
    func localSharedMembers() -> [String: [String]] {
        state.withLock { $0.sharedTypes }
    }

    /// Removes and returns the request `hostRequestID` if it waits for another host's answer.
    func takePendingOnHost(hostRequestID: UInt64) -> PendingRequest? {
        state.withLock { state in
            guard let request = state.pending[hostRequestID], case .host = request.responder else { return nil }
            state.pending[hostRequestID] = nil
            state.deadlines.cancel(hostRequestID)
            return request
        }
    }

    /// Removes and returns the requests waiting for `host`'s answer (to agent type
    /// `agentType` only, when given).
    func forgetPending(onHost host: String, agentType: String? = nil) -> [PendingRequest] {
        state.withLock { state in
            guard let agentType else { return state.removePending(answeredBy: host) }
            var removed: [PendingRequest] = []
            for (id, request) in state.pending where request.responder == .host(host) && request.target.type == agentType {
                state.pending[id] = nil
                state.deadlines.cancel(id)
                removed.append(request)
            }
            return removed
        }
    }

    /// Removes and returns every request waiting for another host's answer (the cluster's
    /// connection is lost: no answer can arrive).
    func drainPendingOnHosts() -> [PendingRequest] {
        state.withLock { state in state.removePending(answeredBy: nil) }
    }

    /// The hosts that hold agent types or subscriptions, as far as this host knows.
    func remoteHosts() -> Set<String> {
        state.withLock { state in
            Set(state.remote.subscriptions.keys).union(state.remote.typeOwners.values.map(\.host))
        }
    }


    // MARK: Routing

    /// The data channels serving an agent type subscribed to `topicType`, each once, and the
    /// other hosts serving one (each once).
    func recipients(ofTopicType topicType: String) -> Recipients {
        state.withLock { state in
            if let cached = state.recipients[topicType] { return cached }
            var agentTypes = state.subscriptions.agentTypes(matching: topicType)
            for index in state.remote.subscriptions.values {
                agentTypes.formUnion(index.agentTypes(matching: topicType))
            }
            var seen = Set<String>()
            var hosts = Set<String>()
            var result = Recipients()
            for agentType in agentTypes {
                if let shared = state.sharedType(agentType) {
                    result.shared.append(shared)
                } else if let owner = state.agentTypeOwners[agentType] {
                    guard seen.insert(owner).inserted, let connection = state.clients[owner]?.data else { continue }
                    result.local.append(connection)
                } else if let remote = state.remote.typeOwners[agentType], hosts.insert(remote.host).inserted {
                    result.hosts.append(remote.host)
                }
            }
            // A topic type nobody serves is cached too (an empty list); the cache is bounded.
            state.recipients.insert(result, for: topicType)
            return result
        }
    }

    enum RequestRoute: Sendable {
        /// Forward with this host request id to this connection.
        case forward(UInt64, WorkerConnection)
        /// Forward with this host request id to the host of the cluster that serves the type.
        case forwardToHost(UInt64, String)
        case unknownAgentType
        /// The owner registered the type but has no data channel open.
        case ownerNotConnected(String)
        /// The caller has ``RoutingTable/maxPendingPerCaller`` requests waiting already.
        case tooManyPending
    }

    /// The most RPCs one worker may have waiting for an answer at once (each holds an entry of
    /// the host's until answered or timed out).
    static let maxPendingPerCaller = 10_000

    /// Records an RPC from `caller` to `targetType` and picks where it goes.
    /// - Parameter remoteCallers: whether the type may be served by another host (false for a
    ///   request that came from another host: it is never forwarded again).
    func routeRequest(from caller: Caller, requestID: String, target: AgentID,
                      deadline: ContinuousClock.Instant, remoteOwners: Bool = true) -> RequestRoute {
        state.withLock { state in
            if state.pending.waiting(from: caller) >= Self.maxPendingPerCaller { return .tooManyPending }
            if state.agentTypeOwners[target.type] == nil, let shared = state.sharedType(target.type),
               case .host(let host) = shared.route(forKey: target.key) {
                // The key is placed on another host's worker.
                guard remoteOwners else { return .unknownAgentType }
                let id = state.issue(PendingRequest(
                    caller: caller, originalRequestID: requestID, responder: .host(host), target: target, deadline: deadline))
                return .forwardToHost(id, host)
            }
            guard let owner = state.agentTypeOwners[target.type]
                ?? state.sharedType(target.type)?.owner(forKey: target.key) else {
                guard remoteOwners, let remote = state.remote.typeOwners[target.type] else { return .unknownAgentType }
                let id = state.issue(PendingRequest(
                    caller: caller, originalRequestID: requestID, responder: .host(remote.host),
                    target: target, deadline: deadline))
                return .forwardToHost(id, remote.host)
            }
            guard let connection = state.clients[owner]?.data else { return .ownerNotConnected(owner) }
            let id = state.issue(PendingRequest(
                caller: caller, originalRequestID: requestID, responder: .client(owner),
                target: target, deadline: deadline))
            state.clients[owner]?.pendingAsTarget.insert(id)
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

    /// Matches a response from `responder` to its request (nil: from the host the request was
    /// sent to, on the reply subject only that host was given).
    func routeResponse(hostRequestID: UInt64, responder: Responder?) -> ResponseRoute {
        state.withLock { state in
            guard let request = state.pending[hostRequestID] else { return .unknown }
            if let responder {
                guard request.responder == responder else { return .wrongResponder(request) }
            } else {
                guard case .host = request.responder else { return .wrongResponder(request) }
            }
            state.pending[hostRequestID] = nil
            state.deadlines.cancel(hostRequestID)
            if case .client(let clientID) = responder { state.clients[clientID]?.pendingAsTarget.remove(hostRequestID) }
            return .deliver(request)
        }
    }

    /// Removes and returns the requests whose deadline has passed.
    func expiredRequests(now: ContinuousClock.Instant) -> [PendingRequest] {
        state.withLock { state in
            state.deadlines.removeExpired(now: now).compactMap { id in
                guard let request = state.pending.removeValue(forKey: id) else { return nil }
                if case .client(let clientID) = request.responder { state.clients[clientID]?.pendingAsTarget.remove(id) }
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

    enum ControlRoute: Sendable {
        case local(WorkerConnection)
        /// The agent type's owner is a client of another host of the cluster.
        case host(String)
        case none
    }

    /// Where a `destination` (`agentid=type/key` or `clientid=ID`) reaches: a control channel
    /// of this host, or the host that serves the agent type.
    func controlRoute(forDestination destination: String) -> ControlRoute {
        state.withLock { state in
            if destination.hasPrefix("clientid=") {
                return state.clients[String(destination.dropFirst("clientid=".count))]?.control.map { .local($0) } ?? .none
            }
            if destination.hasPrefix("agentid="), let id = AgentID(destination.dropFirst("agentid=".count)) {
                if state.agentTypeOwners[id.type] == nil, let shared = state.sharedType(id.type),
                   case .host(let host) = shared.route(forKey: id.key) {
                    return .host(host)
                }
                if let owner = state.agentTypeOwners[id.type] ?? state.sharedType(id.type)?.owner(forKey: id.key) {
                    return state.clients[owner]?.control.map { .local($0) } ?? .none
                }
                if let remote = state.remote.typeOwners[id.type] { return .host(remote.host) }
            }
            return .none
        }
    }

    /// The open data channels and how many RPCs wait for an answer (metrics).
    func load() -> (dataChannels: [WorkerConnection], pendingRPCs: Int) {
        state.withLock { state in (state.clients.values.compactMap(\.data), state.pending.count) }
    }

    /// All open data and control channels (shutdown).
    func allConnections() -> [WorkerConnection] {
        state.withLock { state in state.clients.values.flatMap { [$0.data, $0.control].compactMap { $0 } } }
    }

    // MARK: Status

    /// A connected worker as `agentd status` shows it.
    struct WorkerSummary: Sendable {
        var connection: WorkerConnection
        /// Every agent type it serves (shared ones included), sorted.
        var agentTypes: [String]
        /// Those it serves as shared, sorted.
        var sharedAgentTypes: [String]
        var subscriptionCount: Int
        /// Whether it has a control channel open too (every agentd runtime does).
        var hasControlChannel: Bool
    }

    /// Every client with an open data channel, by client id.
    func workerSummaries() -> [WorkerSummary] {
        state.withLock { state in
            state.clients.compactMap { id, client -> WorkerSummary? in
                guard let data = client.data else { return nil }
                return WorkerSummary(
                    connection: data, agentTypes: client.agentTypes.sorted(),
                    sharedAgentTypes: client.agentTypes.filter { state.sharedTypes[$0]?.contains(id) == true }.sorted(),
                    subscriptionCount: client.subscriptionIDs.count, hasControlChannel: client.control != nil)
            }.sorted { $0.connection.clientID < $1.connection.clientID }
        }
    }
}
