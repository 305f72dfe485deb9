import AgentCore
import ProtoWire
import GRPCTransport
import Logging

/// The routing of events and RPCs, shared by the workers' data channels and the messages that
/// come from the cluster's other hosts.
extension AgentHost {
    /// Sends an event to this host's workers that serve an agent type subscribed to its topic
    /// type, and — for a worker's publish, not one forwarded by another host — once to each
    /// other host of the cluster that serves one. An event no one receives, and every event of
    /// the host's first moments, is kept for late subscribers (``LateEvents``).
    func publish(
        _ message: MessageBuffer, _ event: CloudEventHeader, forwarded: Bool, logger: Logger, tally: ChannelTally? = nil
    ) {
        if let late {
            if late.isActive {
                return publishKeeping(message, event, forwarded: forwarded, late: late, logger: logger, tally: tally)
            }
            let recipients = table.recipients(ofTopicType: event.topicType)
            if recipients.isEmpty {
                return publishKeeping(message, event, forwarded: forwarded, late: late, logger: logger, tally: tally)
            }
            _ = route(message, event, to: recipients, forwarded: forwarded, logger: logger, tally: tally)
            return
        }
        _ = route(message, event, to: table.recipients(ofTopicType: event.topicType), forwarded: forwarded, logger: logger, tally: tally)
    }

    /// The publish path while events are kept: routes under the late-subscriber lock (no
    /// subscription can arrive in between) and keeps the event if it reached no one.
    private func publishKeeping(
        _ message: MessageBuffer, _ event: CloudEventHeader, forwarded: Bool, late: LateEvents, logger: Logger,
        tally: ChannelTally?
    ) {
        late.publish((message, event.topicType, event.topicSource, forwarded)) {
            route(message, event, to: table.recipients(ofTopicType: event.topicType), forwarded: forwarded,
                  reporting: true, logger: logger, tally: tally)
        }
    }

    /// Makes a change to the routing table that may give kept events new recipients (a
    /// subscription, an agent type registered), then hands them the kept events they match.
    func changingRecipients<T, E: Error>(_ change: () throws(E) -> T) throws(E) -> T {
        guard let late else { return try change() }
        return try late.changingRecipients(change) { entry in
            route(entry.message, topicType: entry.topicType, topicSource: entry.topicSource,
                  to: table.recipients(ofTopicType: entry.topicType), forwarded: entry.forwarded,
                  reporting: true, skipping: entry.reached, logger: logger, tally: nil)
        }
    }

    /// Hands an event to `recipients`.
    /// - Parameters:
    ///   - reporting: return whom it reached; otherwise nobody.
    ///   - skipping: whom not to send it to (reached already).
    @discardableResult
    private func route(
        _ message: MessageBuffer, _ event: CloudEventHeader, to recipients: RoutingTable.Recipients, forwarded: Bool,
        reporting: Bool = false, logger: Logger, tally: ChannelTally?
    ) -> LateEvents.Reached {
        route(message, topicType: event.topicType, topicSource: event.topicSource, to: recipients, forwarded: forwarded,
              reporting: reporting, skipping: LateEvents.Reached(), logger: logger, tally: tally)
    }

    private func route(
        _ message: MessageBuffer, topicType: String, topicSource: String, to recipients: RoutingTable.Recipients,
        forwarded: Bool, reporting: Bool, skipping: LateEvents.Reached, logger: Logger, tally: ChannelTally?
    ) -> LateEvents.Reached {
        let limits = configuration.queueLimits
        var reached = LateEvents.Reached()
        var (copies, full) = (0, 0)
        func send(_ connection: WorkerConnection) {
            if reporting {
                guard !skipping.clients.contains(connection.clientID) else { return }
                reached.clients.append(connection.clientID)
            }
            copies += 1
            if !connection.sendEvent(message, limits: limits, logger: logger) { full += 1 }
        }
        for recipient in recipients.local { send(recipient) }
        var hosts = recipients.hosts
        if !recipients.shared.isEmpty {
            // One instance per key: the worker the key is placed on (once, even when it serves
            // several subscribed types; its runtime delivers to each of them it should).
            var sent = recipients.local.map { ObjectIdentifier($0) }
            for shared in recipients.shared {
                switch shared.route(forKey: topicSource) {
                case .local(let owner):
                    guard !sent.contains(ObjectIdentifier(owner)) else { continue }
                    sent.append(ObjectIdentifier(owner))
                    send(owner)
                case .host(let host):
                    if !hosts.contains(host) { hosts.append(host) }
                case .none:
                    continue
                }
            }
        }
        if !forwarded, !hosts.isEmpty, let cluster {
            if reporting {
                hosts.removeAll { skipping.hosts.contains($0) }
                reached.hosts = hosts
            }
            if !hosts.isEmpty { cluster.forwardEvent(message, to: hosts, topicType: topicType) }
        }
        tally?.published(queued: copies - full, full: full, hosts: forwarded || cluster == nil ? 0 : hosts.count)
        return reached
    }

    /// Routes an RPC (`bytes`: an `agents.Message` carrying `request`) to the worker serving
    /// its target type — on this host, or, for a worker's request, on the host of the cluster
    /// that serves it — or answers it with an error at once.
    /// - Parameter deadline: when the caller stops waiting (a request from another host brings
    ///   its caller's).
    func route(
        _ bytes: UnsafeRawBufferPointer, _ request: RpcRequestHeader, from caller: Caller,
        deadline: ContinuousClock.Instant, logger: Logger, tally: ChannelTally? = nil
    ) {
        let target = AgentID(type: request.targetType, key: request.targetKey)
        let fromPeer: Bool
        if case .peer = caller { fromPeer = true } else { fromPeer = false }
        let route = table.routeRequest(
            from: caller, requestID: request.requestID, target: target, deadline: deadline, remoteOwners: !fromPeer)
        let rewritten: [UInt8]
        switch route {
        case .forward(let hostID, _), .forwardToHost(let hostID, _):
            do {
                rewritten = try Envelope.replacingRequestID(in: bytes, messageField: 1, body: request.body, with: String(hostID))
            } catch {
                tally?.routedRequest(droppedFor: .malformed)
                if case .deliver(let pending) = table.routeResponse(hostRequestID: hostID, responder: route.responder!) {
                    answer(pending, error: "Malformed request to \(target): \(error)")
                }
                return
            }
        case .unknownAgentType:
            tally?.dropped(.request, .unknownAgentType)
            let reason: String
            if case .peer = caller, let cluster {
                // The caller's host thought the type was here: it moved or went meanwhile.
                reason = "is not served on host \(cluster.name) any more (it moved or its worker left)"
            } else {
                reason = cluster == nil ? "is not registered with the host" : "is not registered with any host of the cluster"
            }
            answer(caller, requestID: request.requestID, error: "Agent type '\(request.targetType)' \(reason) (request to \(target)).")
            return
        case .ownerNotConnected:
            tally?.dropped(.request, .ownerNotConnected)
            answer(caller, requestID: request.requestID,
                   error: "Agent type '\(request.targetType)' belongs to a client with no open channel (request to \(target)).")
            return
        case .tooManyPending:
            tally?.dropped(.request, .tooManyPending)
            answer(caller, requestID: request.requestID, error: """
                Request to \(target) refused: this client has \(RoutingTable.maxPendingPerCaller) RPCs waiting for an answer \
                already, the most the host allows one client.
                """)
            return
        }
        switch route {
        case .forward(let hostID, let destination):
            let limits = configuration.queueLimits
            switch destination.send(MessageBuffer(rewritten), limits: limits) {
            case .queued:
                tally?.routedRequest()
            case .full:
                tally?.routedRequest(droppedFor: .queueFull)
                if case .deliver(let pending) = table.routeResponse(hostRequestID: hostID, responder: .client(destination.clientID)) {
                    answer(pending, error: "The worker serving \(target) is overloaded (\(limits.messages) messages wait for it); the request was not delivered.")
                }
            case .closed:
                tally?.routedRequest(droppedFor: .connectionClosed)
                // The destination's stream is ending; its departure answers the caller.
                logger.debug("request to a closing channel", metadata: ["agent.id": "\(target)"])
            }
        case .forwardToHost(let hostID, let owner):
            guard let cluster else { return }
            let failure = cluster.forwardRequest(rewritten, hostRequestID: hostID, to: owner, deadline: deadline)
            tally?.routedRequest(droppedFor: failure == nil ? nil : .hostUnreachable)
            if let failure, case .deliver(let pending) = table.routeResponse(hostRequestID: hostID, responder: .host(owner)) {
                answer(pending, error: "The request to \(target) could not reach host \(owner), which serves agent type '\(target.type)': \(failure)")
            }
        default:
            break
        }
    }

    /// Hands a response (`bytes`: an `agents.Message` carrying `response`, whose request id is
    /// this host's) from `responder` to the caller of its request.
    /// - Parameter responder: who sent it; nil for an answer from another host on the reply
    ///   subject of the request.
    func deliver(
        _ bytes: UnsafeRawBufferPointer, _ response: RpcResponseHeader, from responder: RoutingTable.Responder?, logger: Logger,
        tally: ChannelTally? = nil
    ) {
        guard let hostID = UInt64(response.requestID) else {
            tally?.dropped(.response, .noPendingRequest)
            logger.warning("response with a request id the host never issued dropped", metadata: ["request.id": "\(response.requestID)"])
            return
        }
        switch table.routeResponse(hostRequestID: hostID, responder: responder) {
        case .deliver(let request):
            tally?.routed(.response)
            do {
                let rewritten = try Envelope.replacingRequestID(
                    in: bytes, messageField: 2, body: response.body, with: request.originalRequestID)
                tally?.delivered(.response)
                metrics?.rpcAnswered(request)
                send(MessageBuffer(rewritten), to: request.caller)
            } catch {
                tally?.dropped(.response, .malformed)
                answer(request, error: "The answer from \(request.target) was malformed: \(error)")
            }
        case .unknown:
            tally?.dropped(.response, .noPendingRequest)
            logger.debug("response to no waiting request dropped (answered already, or timed out)", metadata: ["request.id": "\(response.requestID)"])
        case .wrongResponder(let request):
            tally?.dropped(.response, .wrongResponder)
            logger.warning("response from a client the request was not sent to dropped", metadata: [
                "request.id": "\(response.requestID)", "agent.id": "\(request.target)",
            ])
        }
    }

    /// Tells the workers of a shared agent type which workers serve it now (after one joined or
    /// left): each then lets go of the keys no longer placed on it. Sent on the data channel,
    /// so that it arrives before anything the host routes by the new placement.
    func announce(_ shared: RoutingTable.SharedType) {
        let notice = MessageBuffer(Self.placementNotice(shared))
        for connection in shared.connections.values { connection.sendEvent(notice) }
        logger.info("shared agent type served by", metadata: ["agent.type": "\(shared.name)", "client.ids": "\(shared.members)"])
    }

    /// The notice as a CloudEvent: topic (``Placement/noticeTopicType``, the agent type), the
    /// client ids as text, one per line.
    static func placementNotice(_ shared: RoutingTable.SharedType) -> [UInt8] {
        var message = ProtoWriter(capacity: 64 + shared.name.utf8.count + shared.members.reduce(0) { $0 + $1.utf8.count + 1 })
        message.messageField(3) { event in
            event.stringField(1, "placement")
            event.stringField(2, shared.name)
            event.stringField(3, "1.0")
            event.stringField(4, Placement.noticeTopicType)
            event.stringField(7, shared.members.joined(separator: "\n"))
        }
        return message.bytes
    }

    /// Sends an answer to a caller: on its data channel, or to its host.
    func send(_ message: MessageBuffer, to caller: Caller) {
        switch caller {
        case .worker(let connection): connection.sendAnswer(message, limits: configuration.queueLimits, logger: logger)
        case .peer(let peer): cluster?.reply(message, to: peer)
        }
    }

    /// Sends an error response for `request` to its caller.
    func answer(_ request: RoutingTable.PendingRequest, error: String) {
        answer(request.caller, requestID: request.originalRequestID, error: error)
    }

    func answer(_ caller: Caller, requestID: String, error: String) {
        send(MessageBuffer(Envelope.errorResponse(requestID: requestID, error: error)), to: caller)
    }
}

extension RoutingTable.RequestRoute {
    /// Who the route's request went to.
    var responder: RoutingTable.Responder? {
        switch self {
        case .forward(_, let connection): .client(connection.clientID)
        case .forwardToHost(_, let host): .host(host)
        default: nil
        }
    }
}
