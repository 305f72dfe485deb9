import CNATS
import Logging
import Synchronization

/// A watch on keys of a ``KeyValueBucket`` (``KeyValueBucket/watch(_:_:)``): updates delivered
/// to a handler as they happen, made again from the keys' current values after every reconnect.
///
/// nats.c 3.4.1's own watcher (`kvStore_Watch`) is pull-only (`kvWatcher_Next` blocks a thread)
/// and rests on an ordered consumer that nats.c recreates by itself after a reconnect, on a thread
/// of its own: stopping such a watcher while that thread runs is a use-after-free inside nats.c
/// (seen under AddressSanitizer: `jsSub_deleteConsumer` reads the consumer name the recreation
/// frees), and a recreation that fails is retried only after missed heartbeats, so the watcher
/// may sit silent (nats.c#988). So this watch does not use it. It makes its own ephemeral push
/// consumer on the bucket's stream (last value per key, then every change, no acks), delivered to
/// an inbox this connection subscribes to like any subject: no thread of its own, no blocking
/// pull. After every reconnect, and after a gap in the consumer's sequence, it makes a new
/// consumer from the keys' current values and passes on only what the handler has not seen (by
/// revision); a key that went away meanwhile is reported as
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
    private let handler: @Sendable (Event) -> Void
    private let control = Mutex(Control())
    private let delivery = Mutex(Delivery())
    /// Requests to make the consumer again (reconnects, gaps), at most one waiting.
    private let resynchronisations: AsyncStream<Void>
    private let requestResynchronisation: AsyncStream<Void>.Continuation

    private struct Control {
        var stopRequested = false
        var reconnectObserver: Int?
        var maintainer: Task<Void, Never>?
        /// The inbox subscription and consumer now in use, for the next resynchronisation or the
        /// stop to remove.
        var subscription: NATSSubscription?
        var consumer: String?
        var finished = false
        var finishWaiters: [CheckedContinuation<Void, Never>] = []
    }

    /// What the message path keeps, under one lock so that the handler runs one update at a
    /// time, in order, whichever delivery thread brings it.
    private struct Delivery {
        /// Which consumer's messages count: older ones' are dropped.
        var generation = 0
        var stopped = false
        /// The consumer sequence the next message must carry (a gap means lost messages).
        var expectedConsumerSequence: UInt64 = 1
        /// The keys among this consumer's initial values; nil once they are all in.
        var initialKeys: Set<String>? = []
        /// The revision passed on last for each key, and whether the key had a value then.
        var known: [String: (revision: UInt64, present: Bool)] = [:]
    }

    private init(bucket: KeyValueBucket, keys: String, handler: @escaping @Sendable (Event) -> Void) {
        self.bucket = bucket
        self.keys = keys
        self.handler = handler
        (resynchronisations, requestResynchronisation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    private var connection: NATSConnection { bucket.connection }
    private var logger: Logger { connection.logger }
    private var metadata: Logger.Metadata { ["kv.bucket": "\(bucket.name)", "kv.keys": "\(keys)"] }
    private var streamName: String { "KV_\(bucket.name)" }

    static func start(
        bucket: KeyValueBucket, keys: String, handler: @escaping @Sendable (Event) -> Void
    ) async throws -> KeyValueWatch {
        let watch = KeyValueWatch(bucket: bucket, keys: keys, handler: handler)
        let connection = bucket.connection
        guard connection.register(watch) else {
            throw NATSError(code: .connectionClosed, message: "watch \(keys) in bucket \(bucket.name): the connection is closed",
                            address: connection.address, bucket: bucket.name, key: keys)
        }
        // From nats.c's callback thread: only a request, never a wait.
        let observer = connection.eventRelay.addReconnectObserver { [weak watch] in
            watch?.requestResynchronisation.yield()
        }
        watch.control.withLock { $0.reconnectObserver = observer }
        do {
            try await watch.establish()
        } catch {
            await watch.end()
            throw error
        }
        watch.logger.debug("key-value watch started", metadata: watch.metadata)
        let maintainer = Task { await watch.maintain() }
        watch.control.withLock { $0.maintainer = maintainer }
        return watch
    }

    /// Ends the watch: the handler is not called once the update it may be handling now returns.
    /// Safe to call more than once, and from the handler; ``finished()`` waits for the end (the
    /// server's consumer removed).
    public func stop() {
        let maintainer: Task<Void, Never>? = control.withLock { control in
            guard !control.stopRequested else { return nil }
            control.stopRequested = true
            return control.maintainer
        }
        // Not `delivery`'s lock: the handler, which may call this, holds it.
        requestResynchronisation.finish()
        maintainer?.cancel()
    }

    /// Returns once the watch has ended (after ``stop()``, the connection's close, or the
    /// connection closing for good). Never call it from the handler.
    public func finished() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let finished = control.withLock { control in
                if !control.finished { control.finishWaiters.append(continuation) }
                return control.finished
            }
            if finished { continuation.resume() }
        }
    }

    // MARK: - Keeping the consumer

    /// Makes the consumer again for every request, until stopped; then removes it.
    private func maintain() async {
        for await _ in resynchronisations {
            var failures = 0
            while !Task.isCancelled {
                do {
                    try await establish()
                    logger.notice("key-value watch resynchronised", metadata: metadata)
                    break
                } catch let error as NATSError where error.code == .connectionClosed {
                    stop()
                } catch {
                    failures += 1
                    let level: Logger.Level = failures == 1 ? .warning : .debug
                    logger.log(level: level, "key-value watch could not be made again; retrying",
                               metadata: metadata.merging(["error": "\(error)", "attempt": "\(failures)"]) { $1 })
                    try? await Task.sleep(for: .milliseconds(min(2_000, 50 << min(failures - 1, 6))))
                }
            }
        }
        await end()
    }

    /// Replaces the consumer (if any) with a new one that starts from the keys' current values.
    private func establish() async throws {
        let generation = delivery.withLock { delivery in
            delivery.generation += 1
            delivery.expectedConsumerSequence = 1
            delivery.initialKeys = []
            return delivery.generation
        }
        try await removeConsumer()
        let inbox = connection.newInbox()
        let subscription = try connection.subscribe(to: inbox) { [weak self] message in
            self?.receive(message, generation: generation)
        }
        let pending: UInt64
        do {
            let consumer: String
            (consumer, pending) = try await createConsumer(deliveringTo: inbox)
            control.withLock { control in
                control.subscription = subscription
                control.consumer = consumer
            }
        } catch {
            subscription.unsubscribe()
            throw error
        }
        if pending == 0 {
            // No initial values will come: caught up now (unless a new write beat us to it).
            delivery.withLock { delivery in
                guard delivery.generation == generation, !delivery.stopped, delivery.initialKeys != nil else { return }
                finishInitialValues(&delivery)
            }
        }
    }

    private func createConsumer(deliveringTo inbox: String) async throws -> (name: String, pending: UInt64) {
        try await connection.blockingCall { [connection, bucket, keys, streamName] in
            let jetStream = try connection.jetStream()
            let what = "watch \(keys) in bucket \(bucket.name) on \(connection.address)"
            var config = jsConsumerConfig()
            try check(jsConsumerConfig_Init(&config), what, bucket: bucket.name, key: keys)
            config.DeliverPolicy = js_DeliverLastPerSubject
            config.AckPolicy = js_AckNone
            // Gone by itself this long after its subscriber is (a host that died).
            config.InactiveThreshold = Duration.seconds(60).wholeNanoseconds
            var info: UnsafeMutablePointer<jsConsumerInfo>?
            var errorCode = jsErrCode(rawValue: 0)
            let status = inbox.withCString { inboxText in
                "$KV.\(bucket.name).\(keys)".withCString { filter in
                    config.DeliverSubject = inboxText
                    config.FilterSubject = filter
                    return js_AddConsumer(&info, jetStream.pointer, streamName, &config, nil, &errorCode)
                }
            }
            guard status == NATS_OK, let info else {
                throw NATSError(status, what, code: errorCode == JSStreamNotFoundErr ? .bucketNotFound : nil,
                                address: connection.address, bucket: bucket.name, key: keys)
            }
            defer { jsConsumerInfo_Destroy(info) }
            return (String(cString: info.pointee.Name), info.pointee.NumPending)
        }
    }

    /// Ends the inbox subscription and deletes the consumer now in use, if any (best effort: a
    /// server that restarted has lost it already).
    private func removeConsumer() async throws {
        let (subscription, consumer) = control.withLock { control in
            defer {
                control.subscription = nil
                control.consumer = nil
            }
            return (control.subscription, control.consumer)
        }
        subscription?.unsubscribe()
        guard let consumer else { return }
        try await connection.blockingCall { [connection, streamName] in
            let jetStream = try connection.jetStream()
            _ = js_DeleteConsumer(jetStream.pointer, streamName, consumer, nil, nil)
        }
    }

    private func end() async {
        delivery.withLock { $0.stopped = true }
        // Only while connected: a JetStream request made while nats.c reconnects waits out its
        // whole timeout (a host stopped during a NATS outage took 5 s per watch). The server
        // removes an ephemeral consumer whose deliveries no one receives by itself.
        if connection.status == .connected { try? await removeConsumer() }
        let (observer, waiters) = control.withLock { control in
            control.finished = true
            defer {
                control.finishWaiters = []
                control.reconnectObserver = nil
            }
            return (control.reconnectObserver, control.finishWaiters)
        }
        if let observer { connection.eventRelay.removeReconnectObserver(observer) }
        requestResynchronisation.finish()
        connection.unregister(self)
        logger.debug("key-value watch ended", metadata: metadata)
        for waiter in waiters { waiter.resume() }
    }

    // MARK: - The message path (nats.c delivery threads)

    private func receive(_ message: NATSMessage, generation: Int) {
        // Heartbeats and other status messages carry no acknowledgement subject: not updates.
        guard let reply = message.replySubject, let position = Self.deliveryPosition(reply),
              message.subject.hasPrefix("$KV.\(bucket.name).")
        else { return }
        let key = String(message.subject.dropFirst("$KV.\(bucket.name).".count))
        let operation: KeyValueEntry.Operation = switch message.headers["KV-Operation"] {
        case "DEL": .delete
        case "PURGE": .purge
        default: .put
        }
        let entry = KeyValueEntry(
            key: key, value: operation == .put ? message.payload : [], revision: position.streamSequence,
            operation: operation, createdNanoseconds: position.timestamp)
        let stopped = control.withLock { $0.stopRequested }
        delivery.withLock { delivery in
            guard !stopped, !delivery.stopped, delivery.generation == generation else { return }
            guard position.consumerSequence == delivery.expectedConsumerSequence else {
                // Messages were lost (a slow consumer, a server that lost the consumer's state):
                // start again from the current values.
                logger.notice("key-value watch missed updates; resynchronising", metadata: metadata)
                delivery.generation += 1  // nothing more from this consumer
                requestResynchronisation.yield()
                return
            }
            delivery.expectedConsumerSequence += 1
            delivery.initialKeys?.insert(key)
            let previous = delivery.known.updateValue((entry.revision, entry.operation == .put), forKey: key)
            if previous?.revision != entry.revision { handler(.entry(entry)) }
            if delivery.initialKeys != nil, position.pending == 0 { finishInitialValues(&delivery) }
        }
    }

    /// The initial values are all in: a key known before and not among them is gone.
    private func finishInitialValues(_ delivery: inout Delivery) {
        if let initialKeys = delivery.initialKeys {
            for (key, state) in delivery.known where !initialKeys.contains(key) {
                delivery.known[key] = nil
                if state.present {
                    handler(.entry(KeyValueEntry(key: key, value: [], revision: 0, operation: .vanished, createdNanoseconds: 0)))
                }
            }
        }
        delivery.initialKeys = nil
        handler(.caughtUp)
    }

    /// Where a consumer's message stands, from its acknowledgement subject:
    /// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>`, or
    /// the newer form with a domain and an account hash after `ACK` (and a random token at the
    /// end).
    static func deliveryPosition(_ reply: String) -> (streamSequence: UInt64, consumerSequence: UInt64, timestamp: Int64, pending: UInt64)? {
        let tokens = reply.split(separator: ".", omittingEmptySubsequences: false)
        guard tokens.count >= 9, tokens[0] == "$JS", tokens[1] == "ACK" else { return nil }
        let first = tokens.count == 9 ? 5 : 7
        guard tokens.count > first + 3, let streamSequence = UInt64(tokens[first]), let consumerSequence = UInt64(tokens[first + 1]),
              let timestamp = Int64(tokens[first + 2]), let pending = UInt64(tokens[first + 3])
        else { return nil }
        return (streamSequence, consumerSequence, timestamp, pending)
    }
}
