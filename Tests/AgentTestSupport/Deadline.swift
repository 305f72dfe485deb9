// Waiting with a deadline, for what a test cannot be told about through an AsyncCondition
// (prefer that one when the test owns the state).

/// The value `body` produces, or nil if `timeout` passes first; `body` is cancelled then.
///
/// For waiting on something that arrives asynchronously, such as an element of an
/// `AsyncStream`:
///
/// ```swift
/// let first = await withDeadline(.seconds(10)) {
///     for await event in events where event.messageType == "Ready" { return event }
///     return nil
/// }
/// ```
public func withDeadline<T: Sendable>(
    _ timeout: Duration, _ body: @escaping @Sendable () async -> T?
) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { await body() }
        group.addTask {
            try? await Task.sleep(for: timeout)
            return nil
        }
        let first = await group.next() ?? nil
        group.cancelAll()
        return first
    }
}

/// Checks `condition` again and again, `interval` apart, until it holds or `timeout` passes;
/// returns whether it held. (30 s by default: a wait that ends as soon as the condition holds
/// costs nothing more for being long, and a full parallel run on two cores has held the
/// shared task threads up for 11–12 s.)
///
/// Only for state the test can read but not be told about (another process's counters, an
/// agent's state read back through RPCs): the check itself is the wait, and it ends as soon as
/// the condition holds.
public func poll(
    timeout: Duration = .seconds(30), every interval: Duration = .milliseconds(10),
    until condition: () async throws -> Bool
) async rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return true }
        guard ContinuousClock.now < deadline else { return false }
        try? await Task.sleep(for: interval)
    }
}
