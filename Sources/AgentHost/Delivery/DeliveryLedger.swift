import AgentCore
import DequeModule
import GRPCTransport
import Logging
import Synchronization

/// The host's side of acknowledged delivery (``Delivery``): it acknowledges a worker's
/// publishes once each has been handed to every recipient — written to the stream of each
/// AutoGen worker, forwarded to each other host of the cluster, and *confirmed received* by
/// each of our runtimes — and keeps what it sent a runtime that the runtime had not confirmed
/// when its stream broke, to send it again on the runtime's next stream.
///
/// Every ``tick`` the ledger takes a checkpoint: each publisher's count of routed events, and
/// each runtime's count of events sent to it. A publisher's count is acknowledged once every
/// runtime has confirmed the count taken with it (events routed before the checkpoint were sent
/// before it). The per-message path only counts: two atomic adds, and a deque append under the
/// recipient's lock.
final class DeliveryLedger: Sendable {
    /// How often checkpoints are taken and acknowledgements sent.
    static let tick: Duration = .milliseconds(25)
    /// How long the host waits for a runtime's confirmation before it stops waiting for that
    /// runtime (its events count as handed over once written, as an AutoGen worker's do).
    static let confirmTimeout: Duration = .seconds(10)

    private struct Member {
        let stream: AcknowledgedStream
        let connection: WorkerConnection
    }

    private struct Checkpoint {
        /// Publishers, the count to acknowledge to each, and how many of those are new.
        var publishes: [(Member, UInt64, UInt64)]
        /// Runtimes and the count each must have confirmed first.
        var confirmations: [(Member, UInt64)]
        var takenAt: ContinuousClock.Instant
    }

    private struct Parked {
        var messages: [MessageBuffer]
        var until: ContinuousClock.Instant
    }

    private struct State: ~Copyable {
        var members: [ObjectIdentifier: Member] = [:]
        var checkpoints = Deque<Checkpoint>()
        /// What runtimes whose streams ended had not confirmed, by client id, until it expires.
        var parked: [String: Parked] = [:]
    }

    private let state = Mutex(State())
    private let ticker = Mutex<Task<Void, Never>?>(nil)
    private let logger: Logger
    /// How long parked events wait for their runtime to come back.
    let parkingWindow: Duration
    /// Events acknowledged, sent again to a returning runtime, parked and expired (for metrics).
    let eventsAcknowledged = Atomic<Int>(0)
    let eventsResent = Atomic<Int>(0)
    let eventsParkedExpired = Atomic<Int>(0)

    init(parkingWindow: Duration, logger: Logger) {
        self.parkingWindow = parkingWindow
        self.logger = logger
    }

    /// Starts taking checkpoints.
    /// - Parameter barrier: awaited before acknowledgements are sent (the cluster's: events
    ///   forwarded to other hosts have reached the NATS server).
    func start(barrier: @escaping @Sendable () async -> Void = {}) {
        ticker.withLock { ticker in
            ticker = Task.detached { [weak self] in
                var pace = Self.tick
                while !Task.isCancelled {
                    try? await Task.sleep(for: pace)
                    guard let self else { return }
                    let round = self.checkpoint(now: .now)
                    if !round.acknowledgements.isEmpty { await barrier() }
                    self.finish(round)
                    // Nothing waiting: a slower pace, so that an idle host sleeps (the first
                    // publish after a quiet spell is acknowledged up to 50 ms later).
                    pace = round.busy ? Self.tick : .milliseconds(50)
                }
            }
        }
    }

    func stop() {
        ticker.withLock { $0?.cancel() }
    }

    /// A runtime's acknowledged stream opened. Returns what its previous stream (same client id)
    /// left unconfirmed — parked, or taken from a previous stream still open — to send first.
    func attach(_ stream: AcknowledgedStream, connection: WorkerConnection, replacing previous: WorkerConnection?) -> [MessageBuffer] {
        let carried = previous?.delivery?.end() ?? []
        return state.withLock { state in
            state.members[ObjectIdentifier(stream)] = Member(stream: stream, connection: connection)
            let parked = state.parked.removeValue(forKey: connection.clientID)?.messages ?? []
            return parked + carried
        }
    }

    /// A runtime's acknowledged stream ended: what it had not confirmed waits for its next
    /// stream for ``parkingWindow``.
    func detach(_ stream: AcknowledgedStream, clientID: String) {
        let unconfirmed = stream.end()
        state.withLock { state in
            state.members[ObjectIdentifier(stream)] = nil
            guard !unconfirmed.isEmpty else { return }
            var parked = state.parked[clientID]?.messages ?? []
            parked.append(contentsOf: unconfirmed)
            state.parked[clientID] = Parked(messages: parked, until: .now + parkingWindow)
        }
        if !unconfirmed.isEmpty {
            logger.info("events the runtime had not confirmed kept for its return", metadata: [
                "client.id": "\(clientID)", "events": "\(unconfirmed.count)", "window": "\(parkingWindow)",
            ])
        }
    }

    /// What one round of the ticker found.
    struct Round {
        var acknowledgements: [(WorkerConnection, UInt64)] = []
        var givenUp: [WorkerConnection] = []
        var expired: [(String, Int)] = []
        /// Something is waiting (checkpoints not complete, new publishes, parked events).
        var busy = false
    }

    /// One checkpoint, and the acknowledgements of those before it that are complete (sent by
    /// ``finish(_:)``).
    func checkpoint(now: ContinuousClock.Instant) -> Round {
        var acknowledgements: [(WorkerConnection, UInt64)] = []
        var givenUp: [WorkerConnection] = []
        var expired: [(String, Int)] = []
        let busy = state.withLock { state -> Bool in
            var publishes: [(Member, UInt64, UInt64)] = []
            for member in state.members.values {
                // Acquiring: the sends of every event counted here happened before.
                let count = member.stream.received.load(ordering: .acquiring)
                let previous = member.stream.checkpointed.load(ordering: .relaxed)
                if count > previous {
                    publishes.append((member, count, count - previous))
                    member.stream.checkpointed.store(count, ordering: .relaxed)
                }
            }
            if !publishes.isEmpty {
                var confirmations: [(Member, UInt64)] = []
                for member in state.members.values where member.stream.isAwaited {
                    let sent = member.stream.sent.load(ordering: .acquiring)
                    if !member.stream.hasConfirmed(sent) { confirmations.append((member, sent)) }
                }
                state.checkpoints.append(Checkpoint(publishes: publishes, confirmations: confirmations, takenAt: now))
            }
            while var head = state.checkpoints.first {
                head.confirmations.removeAll { $0.0.stream.hasConfirmed($0.1) }
                if !head.confirmations.isEmpty {
                    guard now - head.takenAt >= Self.confirmTimeout else {
                        state.checkpoints[0] = head
                        break
                    }
                    for (member, _) in head.confirmations where member.stream.isAwaited {
                        _ = member.stream.end()
                        givenUp.append(member.connection)
                    }
                }
                state.checkpoints.removeFirst()
                for (member, count, newly) in head.publishes {
                    acknowledgements.append((member.connection, count))
                    eventsAcknowledged.wrappingAdd(Int(newly), ordering: .relaxed)
                }
            }
            for (clientID, parked) in state.parked where parked.until <= now {
                expired.append((clientID, parked.messages.count))
                state.parked[clientID] = nil
            }
            return !publishes.isEmpty || !state.checkpoints.isEmpty || !state.parked.isEmpty
        }
        return Round(acknowledgements: acknowledgements, givenUp: givenUp, expired: expired, busy: busy)
    }

    /// Sends a round's acknowledgements and logs what it gave up.
    func finish(_ round: Round) {
        let (acknowledgements, givenUp, expired) = (round.acknowledgements, round.givenUp, round.expired)
        for (connection, count) in acknowledgements {
            _ = connection.send(MessageBuffer(Delivery.acknowledgement(count: count)))
        }
        for connection in givenUp {
            logger.warning("a runtime did not confirm the events sent to it in time: the host no longer waits for it (its events count as delivered once written)", metadata: [
                "client.id": "\(connection.clientID)", "peer": "\(connection.peer)", "timeout": "\(Self.confirmTimeout)",
            ])
        }
        for (clientID, count) in expired {
            eventsParkedExpired.wrappingAdd(count, ordering: .relaxed)
            logger.warning("events kept for a runtime that did not come back dropped", metadata: [
                "client.id": "\(clientID)", "events": "\(count)", "window": "\(parkingWindow)",
            ])
        }
    }
}
