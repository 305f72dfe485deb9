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
