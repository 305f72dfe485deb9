import Synchronization

/// A bound on the bytes waiting to be sent across many calls (a server's outbound messages):
/// each call charges it with the messages in its send queue and the one in flight, and gives
/// them back as they go out or the call ends.
///
/// The sender asks ``admits(_:held:)`` before a send it may refuse: one that would take the
/// total past ``limit`` is refused — but only for a call that holds its fair share already
/// (``limit`` divided by the calls that have bytes waiting). So the slow readers that filled
/// the budget are the ones refused, and a call that keeps up (its queue empty or nearly so) is
/// still served. Calls under their fair share are served only while the total stays within
/// twice ``limit``: a call's share shrinks as others start holding bytes, so calls that took
/// their share while few held any can together hold more than ``limit`` (each newcomer's share
/// on top of the rest), and the ceiling bounds that pile-up. So the total stays within
/// 2 × ``limit`` plus one message per asking call in flight of the check; sends that do not
/// ask (answers to a call's own requests, say) are charged but never refused.
///
/// A server charges every call it serves to its ``Server/Configuration/sendBudget``.
public final class SendBudget: Sendable {
    /// The bytes that may wait across every call charging this budget.
    public let limit: Int
    private let charged = Atomic<Int>(0)
    /// Calls with bytes charged.
    private let holders = Atomic<Int>(0)
    private let refused = Atomic<Int>(0)

    /// What no asking send takes the total past: twice ``limit`` (saturating).
    public let ceiling: Int

    public init(limit: Int) {
        precondition(limit > 0, "a send budget must be positive")
        self.limit = limit
        self.ceiling = limit.multipliedReportingOverflow(by: 2).overflow ? Int.max : limit * 2
    }

    /// The bytes waiting now, across every call.
    public var bytes: Int { charged.load(ordering: .relaxed) }

    /// The calls that have bytes waiting now.
    public var callsWaiting: Int { holders.load(ordering: .relaxed) }

    /// Sends refused by ``admits(_:held:)`` so far.
    public var refusals: Int { refused.load(ordering: .relaxed) }

    /// Whether a call holding `held` bytes (``Call/budgetedSendBytes``) may queue `size` more;
    /// a refusal is counted.
    public func admits(_ size: Int, held: @autoclosure () -> Int) -> Bool {
        let total = charged.load(ordering: .relaxed)
        if total + size <= limit { return true }
        let held = held()
        let sharers = holders.load(ordering: .relaxed) + (held == 0 ? 1 : 0)
        if held + size <= limit / max(1, sharers), total + size <= ceiling { return true }
        refused.add(1, ordering: .relaxed)
        return false
    }

    /// A call's charge went from `old` to `new` bytes.
    func recharge(from old: Int, to new: Int) {
        guard old != new else { return }
        charged.add(new - old, ordering: .relaxed)
        if old == 0 { holders.add(1, ordering: .relaxed) } else if new == 0 { holders.subtract(1, ordering: .relaxed) }
    }
}
