import DequeModule

/// A few threads of our own that make nats.c's blocking calls (connect, flush, every JetStream
/// and key-value request) for async callers, so that no thread of Swift's cooperative pool ever
/// waits on the network.
///
/// Jobs run in the order they were submitted, `count` at a time. After ``shutDown()`` the
/// threads finish the jobs already queued and end; a job submitted later fails at once with the
/// error ``run(_:ifClosed:)`` is given.
final class BlockingCallThreads: Sendable {
    private struct State {
        var jobs = Deque<@Sendable () -> Void>()
        var shutDown = false
    }

    private let state = ThreadCondition(State())

    init(count: Int, name: String) {
        for index in 0..<max(1, count) {
            LibraryThread.start(name: "\(name)-\(index)") { [state] in
                while true {
                    let job: (@Sendable () -> Void)? = state.wait(until: { !$0.jobs.isEmpty || $0.shutDown }) { state in
                        state.jobs.popFirst()
                    }
                    guard let job else { return }
                    job()
                }
            }
        }
    }

    /// Runs `body` on one of the threads and returns what it returns or throws.
    /// - Parameter closedError: what to throw, without running `body`, once the threads are shut
    ///   down.
    func run<Value: Sendable>(
        _ body: @escaping @Sendable () throws -> Value, ifClosed closedError: @autoclosure () -> any Error
    ) async throws -> Value {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
            let accepted = state.withLock { state -> Bool in
                guard !state.shutDown else { return false }
                state.jobs.append { continuation.resume(with: Result(catching: body)) }
                return true
            }
            if !accepted { continuation.resume(throwing: closedError()) }
        }
    }

    /// Lets the threads end once the jobs already queued have run.
    func shutDown() {
        state.withLock { $0.shutDown = true }
    }
}
