import AgentCore
import Testing

@Suite("DeadlineQueue")
struct DeadlineQueueTests {
    let start = ContinuousClock.now

    @Test("expired keys come out earliest first, once; later ones stay")
    func expiry() {
        var queue = DeadlineQueue<String>()
        queue.schedule("late", at: start + .seconds(3))
        queue.schedule("first", at: start + .seconds(1))
        queue.schedule("second", at: start + .seconds(2))
        let none = queue.removeExpired(now: start)
        #expect(none == [])
        let two = queue.removeExpired(now: start + .seconds(2))
        #expect(two == ["first", "second"])
        let again = queue.removeExpired(now: start + .seconds(2))
        #expect(again == [])
        #expect(queue.count == 1)
        let earliest = queue.earliest()
        #expect(earliest == start + .seconds(3))
    }

    @Test("a cancelled deadline never expires; a moved one expires at its new time only")
    func cancelAndMove() {
        var queue = DeadlineQueue<Int>()
        queue.schedule(1, at: start + .seconds(1))
        queue.schedule(2, at: start + .seconds(1))
        let cancelled = queue.cancel(1)
        let cancelledTwice = queue.cancel(1)
        #expect(cancelled && !cancelledTwice)
        queue.schedule(2, at: start + .seconds(5))
        let early = queue.removeExpired(now: start + .seconds(4))
        #expect(early == [])
        let moved = queue.removeExpired(now: start + .seconds(5))
        #expect(moved == [2])
        #expect(queue.isEmpty)
        let earliest = queue.earliest()
        #expect(earliest == nil)
    }

    @Test("cancelled leftovers do not pile up: many answered requests leave one live deadline")
    func compaction() {
        var queue = DeadlineQueue<Int>()
        for id in 0..<100_000 {
            queue.schedule(id, at: start + .seconds(60))
            queue.cancel(id)
        }
        queue.schedule(-1, at: start + .seconds(1))
        #expect(queue.count == 1)
        let expired = queue.removeExpired(now: start + .seconds(61))
        #expect(expired == [-1])
    }

    @Test("removeAll returns every live key and empties the queue")
    func removeAll() {
        var queue = DeadlineQueue<Int>()
        for id in 0..<5 { queue.schedule(id, at: start + .seconds(Double(id))) }
        queue.cancel(3)
        let all = queue.removeAll()
        #expect(Set(all) == [0, 1, 2, 4])
        #expect(queue.isEmpty)
        let later = queue.removeExpired(now: start + .seconds(10))
        #expect(later == [])
    }
}
