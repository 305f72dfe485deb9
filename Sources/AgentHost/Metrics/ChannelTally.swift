import ProtoWire
import Synchronization

/// What the messages one worker sent on its data channel came to: received, routed, delivered
/// and dropped, by kind (and drops by reason).
///
/// Counted on the message path without an atomic read-modify-write: only the channel's own
/// callbacks write it, and a call's callbacks never overlap (``ServerCallHandler``), so each
/// count is a relaxed load and store of its own — a plain add to memory. Scrapes read it from
/// the metrics listener's thread (relaxed loads: a total may lag by the message in flight).
final class ChannelTally: Sendable {
    /// An `agents.Message`'s kind, as a label (`kind="event"`).
    enum Kind: Int, CaseIterable, Sendable {
        case event, request, response

        var label: String {
            switch self {
            case .event: "event"
            case .request: "request"
            case .response: "response"
            }
        }
    }

    /// Why a message from a worker went nowhere (`reason="queue_full"`). An RPC dropped for
    /// any of them is answered with an error by the host.
    enum Drop: Int, CaseIterable, Sendable {
        /// Not a well-formed message of its kind (a request or response the host cannot re-frame).
        case malformed
        /// Over `max_message_bytes`.
        case oversized
        /// A publish to the host's own placement topic.
        case reservedTopic
        /// An event no agent type subscribes to (on any host).
        case noSubscriber
        /// The recipient's outbound queue is full (a slow consumer).
        case queueFull
        /// The recipient's channel was closing.
        case connectionClosed
        /// A request to an agent type nobody serves.
        case unknownAgentType
        /// A request to an agent type whose worker has no open data channel.
        case ownerNotConnected
        /// A request the cluster could not carry to the host serving its type.
        case hostUnreachable
        /// A response to no waiting request (answered already, timed out, or never sent).
        case noPendingRequest
        /// A response from a worker the request was not sent to.
        case wrongResponder
        /// A routing field (topic, agent type or key, request id) over its ``FieldLimits``.
        case overLimit
        /// A request from a worker that has ``RoutingTable/maxPendingPerCaller`` waiting already.
        case tooManyPending

        var label: String {
            switch self {
            case .malformed: "malformed"
            case .oversized: "oversized"
            case .reservedTopic: "reserved_topic"
            case .noSubscriber: "no_subscriber"
            case .queueFull: "queue_full"
            case .connectionClosed: "connection_closed"
            case .unknownAgentType: "unknown_agent_type"
            case .ownerNotConnected: "owner_not_connected"
            case .hostUnreachable: "host_unreachable"
            case .noPendingRequest: "no_pending_request"
            case .wrongResponder: "wrong_responder"
            case .overLimit: "field_too_long"
            case .tooManyPending: "too_many_pending"
            }
        }

        /// The kinds a message can be dropped for this reason (the label pairs exported).
        var kinds: [Kind] {
            switch self {
            case .malformed: [.request, .response]
            case .oversized, .overLimit: [.event, .request, .response]
            case .reservedTopic, .noSubscriber: [.event]
            case .queueFull, .connectionClosed: [.event, .request]
            case .unknownAgentType, .ownerNotConnected, .hostUnreachable, .tooManyPending: [.request]
            case .noPendingRequest, .wrongResponder: [.response]
            }
        }
    }

    /// Slots: received, routed and delivered by kind; dropped by kind and reason; messages
    /// that were not `agents.Message`s at all.
    static let slotCount = 3 * Kind.allCases.count + Kind.allCases.count * Drop.allCases.count + 1
    static func receivedSlot(_ kind: Kind) -> Int { kind.rawValue }
    static func routedSlot(_ kind: Kind) -> Int { 3 + kind.rawValue }
    static func deliveredSlot(_ kind: Kind) -> Int { 6 + kind.rawValue }
    static func droppedSlot(_ kind: Kind, _ reason: Drop) -> Int { 9 + kind.rawValue * Drop.allCases.count + reason.rawValue }
    static let unparsableSlot = slotCount - 1

    private let counts: InlineArray<49, Atomic<Int>> = InlineArray { _ in Atomic(0) }

    @inline(__always)
    private func add(_ slot: Int, _ count: Int) {
        counts[slot].store(counts[slot].load(ordering: .relaxed) &+ count, ordering: .relaxed)
    }

    @inline(__always) func received(_ kind: Kind) { add(Self.receivedSlot(kind), 1) }
    @inline(__always) func routed(_ kind: Kind) { add(Self.routedSlot(kind), 1) }
    @inline(__always) func delivered(_ kind: Kind, _ count: Int = 1) { add(Self.deliveredSlot(kind), count) }
    @inline(__always) func dropped(_ kind: Kind, _ reason: Drop, _ count: Int = 1) { add(Self.droppedSlot(kind, reason), count) }
    func unparsable() { add(Self.unparsableSlot, 1) }

    /// A request routed, then delivered or dropped for `reason`.
    @inline(__always)
    func routedRequest(droppedFor reason: Drop? = nil) {
        routed(.request)
        if let reason { dropped(.request, reason) } else { delivered(.request) }
    }

    /// What one event came to: `queued` copies queued for this host's workers, `full` dropped
    /// at full queues, `hosts` other hosts it was sent to.
    @inline(__always)
    func published(queued: Int, full: Int, hosts: Int) {
        guard queued + full + hosts > 0 else { return dropped(.event, .noSubscriber) }
        routed(.event)
        delivered(.event, queued + hosts)
        if full > 0 { dropped(.event, .queueFull, full) }
    }

    /// Adds every count to `totals` (``slotCount`` of them).
    func add(to totals: inout [Int]) {
        for slot in 0..<Self.slotCount { totals[slot] += counts[slot].load(ordering: .relaxed) }
    }
}

extension ChannelTally.Kind {
    @inline(__always)
    init(_ envelope: Envelope) {
        switch envelope {
        case .event: self = .event
        case .request: self = .request
        case .response: self = .response
        }
    }
}
