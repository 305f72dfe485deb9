import CNATS
import Logging
import Synchronization

/// A watch on keys of a ``KeyValueBucket`` (``KeyValueBucket/watch(_:_:)``): a thread of its own
/// that pulls from a nats.c watcher and hands each update to the handler, and makes the watcher
/// again after every reconnect.
///
/// Why a thread: nats.c 3.4.1's watchers are pull-only (`kvWatcher_Next` blocks its caller) and
/// have no callback. Why again after a reconnect: they stop silently after one (nats.c#988). The
/// new watcher starts from the keys' current values; the watch passes on only what the handler
/// has not seen (by revision), and reports keys that went away in the meantime as
/// ``KeyValueEntry/Operation-swift.enum/vanished``. What it cannot give back is the revisions
/// written and overwritten while disconnected: the handler sees each key's latest state.
///
/// Dropping the handle does not stop the watch; ``stop()`` does, and so does closing the
/// connection.
public final class KeyValueWatch: Sendable {
    public enum Event: Sendable, Equatable {
        /// A key's value, or its deletion.
        case entry(KeyValueEntry)
        /// Every matching key's value as of the watch's start (or of its resynchronisation after a
        /// reconnect) has been delivered; what follows is new.
        case caughtUp
    }

    public let bucket: KeyValueBucket
    /// The key or pattern watched.
    public let keys: String
    private let control = ThreadCondition(Control())
    private let reconnectObserver = Mutex<Int?>(nil)

    private struct Control {
        var stopRequested = false
        /// Bumped by every reconnect: a watcher made in an earlier generation is made again.
        var generation = 0
        /// The nats.c watcher in use, for ``stop()`` and reconnects to interrupt (`kvWatcher_Stop`
        /// wakes a `kvWatcher_Next` in progress). Only the watch thread destroys it, after taking
        /// it out of here, so it is never stopped and destroyed at once.
        var watcher: LibraryHandle?
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// What the watch knows of a key: the revision it last passed on, and whether the key had a
    /// value then.
    private struct Known {
        var revision: UInt64
        var present: Bool
    }

    private init(bucket: KeyValueBucket, keys: String) {
        self.bucket = bucket
        self.keys = keys
    }

    private var connection: NATSConnection { bucket.connection }
    private var logger: Logger { connection.logger }
    private var metadata: Logger.Metadata { ["kv.bucket": "\(bucket.name)", "kv.keys": "\(keys)"] }

    static func start(
        bucket: KeyValueBucket, keys: String, handler: @escaping @Sendable (Event) -> Void
    ) async throws -> KeyValueWatch {
        let watch = KeyValueWatch(bucket: bucket, keys: keys)
        let connection = bucket.connection
        guard connection.register(watch) else {
            throw NATSError(code: .connectionClosed, message: "watch \(keys) in bucket \(bucket.name): the connection is closed",
                            address: connection.address, bucket: bucket.name, key: keys)
        }
        let observer = connection.eventRelay.addReconnectObserver { [weak watch] in watch?.resynchronize() }
        watch.reconnectObserver.withLock { $0 = observer }
        try await withCheckedThrowingContinuation { (started: CheckedContinuation<Void, any Error>) in
            LibraryThread.start(name: "nats-kv-watch", detached: true) {
                watch.run(handler: handler, started: started)
            }
        }
        return watch
    }

    /// Ends the watch: the handler is not called once the update it may be handling now
    /// returns. Safe to call more than once, and from the handler; ``finished()`` waits for the
    /// end.
    public func stop() {
        control.withLock { control in
            guard !control.stopRequested else { return }
            control.stopRequested = true
            if let watcher = control.watcher { kvWatcher_Stop(watcher.pointer) }
        }
    }

    /// Returns once the watch's thread has ended (after ``stop()``, the connection's close, or
    /// the connection closing for good). Never call it from the handler.
    public func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = control.withLock { control in
                if !control.finished { control.finishWaiters.append(continuation) }
                return control.finished
            }
            if finished { continuation.resume() }
        }
    }

    /// After a reconnect (on nats.c's callback thread: only flags and wakes).
    private func resynchronize() {
        control.withLock { control in
            guard !control.stopRequested else { return }
            control.generation += 1
            if let watcher = control.watcher { kvWatcher_Stop(watcher.pointer) }
        }
    }

    // MARK: - The watch thread

    private enum Interruption {
        /// By ``stop()`` or a reconnect.
        case interrupted
        case failed(NATSError)
    }

    private func run(handler: @Sendable (Event) -> Void, started: CheckedContinuation<Void, any Error>) {
        var started: CheckedContinuation<Void, any Error>? = started
        var known: [String: Known] = [:]
        var failures = 0
        defer {
            started?.resume(throwing: NATSError(
                code: .connectionClosed, message: "watch \(keys) in bucket \(bucket.name): the connection closed",
                address: connection.address, bucket: bucket.name, key: keys))
            end()
        }
        while true {
            guard let generation = control.withLock({ $0.stopRequested ? nil : $0.generation }) else { return }
            LibraryErrors.clear()
            var made: OpaquePointer?
            let status = kvStore_Watch(&made, bucket.store.pointer, keys, nil)
            guard status == NATS_OK, let watcher = made else {
                let error = NATSError(status, "watch \(keys) in bucket \(bucket.name) on \(connection.address)",
                                      address: connection.address, bucket: bucket.name, key: keys)
                if let first = started {
                    started = nil
                    first.resume(throwing: error)
                    return
                }
                guard error.code != .connectionClosed else { return }
                failures += 1
                backOff(after: error, failures: failures, generation: generation)
                continue
            }
            let current = control.withLock { control -> Bool in
                guard !control.stopRequested, control.generation == generation else { return false }
                control.watcher = LibraryHandle(watcher)
                return true
            }
            guard current else {
                kvWatcher_Destroy(watcher)
                continue
            }
            if let first = started {
                started = nil
                first.resume()
                logger.debug("key-value watch started", metadata: metadata)
            } else {
                logger.notice("key-value watch resynchronised after a reconnect", metadata: metadata)
            }
            failures = 0
            let interruption = follow(watcher, known: &known, handler: handler)
            control.withLock { $0.watcher = nil }
            kvWatcher_Destroy(watcher)
            if case .failed(let error) = interruption {
                guard error.code != .connectionClosed else { return }
                failures += 1
                backOff(after: error, failures: failures, generation: generation)
            }
        }
    }

    /// Pulls from `watcher` until it is interrupted or fails.
    private func follow(_ watcher: OpaquePointer, known: inout [String: Known], handler: @Sendable (Event) -> Void) -> Interruption {
        // The keys among this watcher's initial values; nil once they are all in.
        var initialKeys: Set<String>? = []
        while true {
            var next: OpaquePointer?
            let status = kvWatcher_Next(&next, watcher, 10_000)
            switch status {
            case NATS_OK:
                guard let next else {
                    // The initial values are all in: a key known before and not among them is gone.
                    if let initialKeys {
                        for (key, state) in known where !initialKeys.contains(key) {
                            known[key] = nil
                            if state.present {
                                handler(.entry(KeyValueEntry(key: key, value: [], revision: 0, operation: .vanished,
                                                             createdNanoseconds: 0)))
                            }
                        }
                    }
                    initialKeys = nil
                    handler(.caughtUp)
                    continue
                }
                let entry = KeyValueEntry(copying: next)
                kvEntry_Destroy(next)
                initialKeys?.insert(entry.key)
                let previous = known.updateValue(Known(revision: entry.revision, present: entry.operation == .put), forKey: entry.key)
                if previous?.revision != entry.revision { handler(.entry(entry)) }
            case NATS_TIMEOUT:
                continue
            case NATS_ILLEGAL_STATE:
                return .interrupted
            default:
                return .failed(NATSError(status, "watch \(keys) in bucket \(bucket.name) on \(connection.address)",
                                         withDetail: false, address: connection.address, bucket: bucket.name, key: keys))
            }
        }
    }

    /// Waits before making the watcher again: 50 ms, doubling to 2 s; cut short by a stop or a
    /// reconnect.
    private func backOff(after error: NATSError, failures: Int, generation: Int) {
        let delay = Duration.milliseconds(min(2_000, 50 << min(failures - 1, 6)))
        if failures == 1 {
            logger.warning("key-value watch interrupted; making it again", metadata: metadata.merging(["error": "\(error)"]) { $1 })
        } else {
            logger.debug("key-value watch still failing", metadata: metadata.merging(["error": "\(error)", "attempt": "\(failures)"]) { $1 })
        }
        control.wait(until: { $0.stopRequested || $0.generation != generation }, timeout: delay) { _, _ in }
    }

    private func end() {
        let waiters = control.withLock { control in
            control.finished = true
            defer { control.finishWaiters = [] }
            return control.finishWaiters
        }
        if let observer = reconnectObserver.withLock({ $0 }) { connection.eventRelay.removeReconnectObserver(observer) }
        connection.unregister(self)
        logger.debug("key-value watch ended", metadata: metadata)
        for waiter in waiters { waiter.resume() }
    }
}
