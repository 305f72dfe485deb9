@testable import GRPCTransport
import Testing

/// The host-wide outbound budget's admission rule, driven call by call: what a set of readers
/// that never read can make it hold, and who is still served.
@Suite("A send budget shared by many calls")
struct SendBudgetTests {
    /// A call's bytes waiting, charged to the budget as a real call's queue is.
    final class Holder {
        let budget: SendBudget
        private(set) var held = 0

        init(_ budget: SendBudget) { self.budget = budget }

        /// Queues `size` bytes if the budget admits them.
        @discardableResult
        func offer(_ size: Int) -> Bool {
            guard budget.admits(size, held: held) else { return false }
            budget.recharge(from: held, to: held + size)
            held += size
            return true
        }

        /// Fills this call with `size`-byte messages until the budget refuses one.
        func fill(_ size: Int) { while offer(size) {} }

        func drain() {
            budget.recharge(from: held, to: 0)
            held = 0
        }
    }

    @Test("under the limit anyone is served; past it only calls under their fair share")
    func fairShare() {
        let budget = SendBudget(limit: 1000)
        let slow = Holder(budget)
        slow.fill(100)
        #expect(slow.held == 1000, "alone, a call may take the whole budget")
        #expect(budget.refusals == 1)
        let newcomer = Holder(budget)
        #expect(newcomer.offer(100), "a call holding nothing is under its share (1000 / 2)")
        #expect(!slow.offer(100), "the call that spent the budget is refused")
        newcomer.drain()
        #expect(budget.bytes == 1000 && budget.callsWaiting == 1)
        slow.drain()
        #expect(budget.bytes == 0 && budget.callsWaiting == 0)
    }

    @Test("readers that stall one after another cannot pile their shares past twice the limit")
    func pileUpIsBounded() {
        let limit = 64 * 1024
        let size = 1024
        let budget = SendBudget(limit: limit)
        var stalled: [Holder] = []
        // Each new reader takes its share while the others keep theirs: without a ceiling
        // the total grows as limit × (1 + 1/2 + 1/3 + …), past 4 × limit with 40 readers.
        for _ in 0..<40 {
            let reader = Holder(budget)
            reader.fill(size)
            stalled.append(reader)
            #expect(budget.bytes <= budget.ceiling, "\(budget.bytes) bytes held with \(stalled.count) readers")
        }
        #expect(budget.ceiling == 2 * limit)
        #expect(budget.bytes > limit, "newcomers were served past the limit while under their share")
        // When one drains, a newcomer is served again.
        stalled[0].drain()
        let late = Holder(budget)
        #expect(late.offer(size))
    }

    @Test("a ceiling past Int's range saturates")
    func hugeLimit() {
        #expect(SendBudget(limit: .max).ceiling == .max)
        #expect(SendBudget(limit: 1).ceiling == 2)
    }
}
