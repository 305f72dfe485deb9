import AgentTestSupport
@testable import AgentRuntime
import Foundation
import Synchronization
import Testing

@Suite("WorkerPool: the handler threads")
struct WorkerPoolTests {
    /// A unit of work that counts its runs into a shared condition and may block its thread.
    final class Job: Schedulable {
        let done: AsyncCondition<Int>
        let gate: DispatchSemaphore?
        let running: Atomic<Int>
        let overlapped = Atomic<Bool>(false)

        init(done: AsyncCondition<Int>, gate: DispatchSemaphore? = nil) {
            self.done = done
            self.gate = gate
            self.running = Atomic(0)
        }

        func runNext() {
            if running.wrappingAdd(1, ordering: .relaxed).newValue > 1 { overlapped.store(true, ordering: .relaxed) }
            gate?.wait()
            running.wrappingSubtract(1, ordering: .relaxed)
            done.mutate { $0 += 1 }
        }
    }

    @Test("every scheduled job runs once per schedule, from any thread")
    func everyJobRuns() async throws {
        let pool = WorkerPool(threads: 2, name: "test-pool")
        defer { pool.stop() }
        let done = AsyncCondition(0)
        let jobs = (0..<50).map { _ in Job(done: done) }
        await withTaskGroup(of: Void.self) { group in
            for chunk in 0..<5 {
                group.addTask { for job in jobs[(chunk * 10)..<(chunk * 10 + 10)] { pool.schedule(job) } }
            }
        }
        let count = await done.wait(timeout: .seconds(10)) { $0 == 50 }
        #expect(count == 50)
    }

    @Test("jobs blocking every handler thread but one do not stop the others")
    func blockedThreadsDoNotStopTheRest() async throws {
        let pool = WorkerPool(threads: 3, name: "test-pool")
        let done = AsyncCondition(0)
        let gate = DispatchSemaphore(value: 0)
        let blockers = (0..<2).map { _ in Job(done: done, gate: gate) }
        for blocker in blockers { pool.schedule(blocker) }
        let quick = (0..<100).map { _ in Job(done: done) }
        for job in quick { pool.schedule(job) }
        let whileBlocked = await done.wait(timeout: .seconds(10), until: { $0 == 100 })
        #expect(whileBlocked == 100, "the quick jobs ran while two threads were blocked")
        gate.signal()
        gate.signal()
        let all = await done.wait(timeout: .seconds(10), until: { $0 == 102 })
        #expect(all == 102)
        pool.stop()
    }

    @Test("threads stuck in work get others started in their place, up to the bound; the extra threads end once they are free")
    func growsPastStuckThreadsAndShrinks() async throws {
        // 1 handler thread (+ the reader), growing to at most 3 (+ the reader).
        let pool = WorkerPool(threads: 1, maxThreads: 3, stuckAfter: .milliseconds(50), name: "test-pool")
        let done = AsyncCondition(0)
        let gate = DispatchSemaphore(value: 0)
        for _ in 0..<2 { pool.schedule(Job(done: done, gate: gate)) }
        let quick = (0..<20).map { _ in Job(done: done) }
        for job in quick { pool.schedule(job) }
        // Growing is the runtime's sweeper's job (every 100 ms); here the test calls it.
        let served = await poll(timeout: .seconds(20), every: .milliseconds(20)) {
            pool.growPastStuckThreads()
            return done.value >= 20
        }
        #expect(served, "the quick jobs ran past the two stuck ones")
        #expect(pool.threadCount > pool.baseThreads && pool.threadCount <= pool.maxThreads)
        // More stuck work than the bound allows: the pool stops at its bound.
        for _ in 0..<3 { pool.schedule(Job(done: done, gate: gate)) }
        let atBound = await poll(timeout: .seconds(20), every: .milliseconds(20)) {
            pool.growPastStuckThreads()
            return pool.busyWork.count == 3
        }
        #expect(atBound)
        pool.growPastStuckThreads()
        #expect(pool.threadCount == pool.maxThreads)
        for _ in 0..<5 { gate.signal() }
        let all = await done.wait(timeout: .seconds(10)) { $0 == 25 }
        #expect(all == 25)
        let shrunk = await poll(timeout: .seconds(10)) { pool.threadCount == pool.baseThreads }
        #expect(shrunk, "\(pool.threadCount) threads")
        pool.stop()
    }

    @Test("stop() does not wait past its margin for a thread that does not come back, and returns its work")
    func stopLeavesAStuckThread() async throws {
        let pool = WorkerPool(threads: 1, name: "test-pool")
        let done = AsyncCondition(0)
        let gate = DispatchSemaphore(value: 0)
        let stuck = Job(done: done, gate: gate)
        pool.schedule(stuck)
        #expect(await poll { pool.busyWork.count == 1 })
        let started = ContinuousClock.now
        let left = pool.stop(waitingUpTo: .milliseconds(200))
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(left.count == 1 && left.first === stuck)
        gate.signal()
        #expect(await done.wait(timeout: .seconds(10)) { $0 == 1 } == 1, "the thread finished its work when it came back")
    }

    @Test("stop() lets queued work finish, then joins the threads")
    func stopFinishesQueuedWork() async throws {
        let pool = WorkerPool(threads: 1, name: "test-pool")
        let done = AsyncCondition(0)
        let jobs = (0..<20).map { _ in Job(done: done) }
        for job in jobs { pool.schedule(job) }
        pool.stop()
        #expect(done.value == 20)
        #expect(jobs.allSatisfy { !$0.overlapped.load(ordering: .relaxed) })
    }
}
