import CNATS

/// A JetStream key-value bucket: get, put, create-only-if-absent, compare-and-set update,
/// delete, purge, keys, and watches that survive reconnects.
///
/// Every call is a request to the server, made on a thread of the connection (never on Swift's
/// cooperative pool), and waits up to ``NATSConnection/Options/jetStreamTimeout``.
///
/// ```swift
/// let claims = try await connection.createOrBindBucket(.init(name: "agentd-agent-types", ttl: .seconds(30)))
/// let revision = try await claims.create("echo", value: Array("host-a".utf8))   // claim
/// _ = try await claims.update("echo", value: Array("host-a".utf8), ifRevision: revision)  // renew
/// ```
public final class KeyValueBucket: Sendable {
    public let name: String
    public let connection: NATSConnection
    let store: LibraryHandle

    init(name: String, connection: NATSConnection, store: LibraryHandle) {
        self.name = name
        self.connection = connection
        self.store = store
    }

    deinit {
        // Releases our reference; nats.c keeps the store while a watcher of it lives.
        kvStore_Destroy(store.pointer)
    }

    private var address: String { connection.address }

    /// The key's latest value, or nil if it has none (never written, deleted or purged).
    public func get(_ key: String) async throws -> KeyValueEntry? {
        try await connection.blockingCall { [store, name, address] in
            var entry: OpaquePointer?
            let status = kvStore_Get(&entry, store.pointer, key)
            if status == NATS_NOT_FOUND { return nil }
            try check(status, "get \(key) from bucket \(name) on \(address)", address: address, bucket: name, key: key)
            guard let entry else { return nil }
            defer { kvEntry_Destroy(entry) }
            return KeyValueEntry(copying: entry)
        }
    }

    /// Writes `value` as the key's latest value, whatever it was.
    /// - Returns: the new revision.
    @discardableResult
    public func put(_ key: String, value: [UInt8]) async throws -> UInt64 {
        try await connection.blockingCall { [store, name, address] in
            var revision: UInt64 = 0
            let status = value.withUnsafeBytes { kvStore_Put(&revision, store.pointer, key, $0.baseAddress, Int32($0.count)) }
            try check(status, "put \(key) in bucket \(name) on \(address)", address: address, bucket: name, key: key)
            return revision
        }
    }

    /// Writes `value` only if the key has no value (never written, or deleted or purged since).
    /// - Returns: the new revision.
    /// - Throws: ``NATSError/Code/keyExists`` (with ``NATSError/currentRevision``) if it has one.
    @discardableResult
    public func create(_ key: String, value: [UInt8]) async throws -> UInt64 {
        try await connection.blockingCall { [store, name, address] in
            var revision: UInt64 = 0
            let status = value.withUnsafeBytes { kvStore_Create(&revision, store.pointer, key, $0.baseAddress, Int32($0.count)) }
            guard status == NATS_OK else {
                throw Self.revisionError(status, conflict: .keyExists, "create \(key) in bucket \(name) on \(address)",
                                         address: address, bucket: name, key: key)
            }
            return revision
        }
    }

    /// Writes `value` only if the key's latest revision is `revision` (compare-and-set: leases,
    /// fencing).
    /// - Returns: the new revision.
    /// - Throws: ``NATSError/Code/wrongRevision`` (with ``NATSError/currentRevision``) if the key
    ///   moved on, or was deleted.
    @discardableResult
    public func update(_ key: String, value: [UInt8], ifRevision revision: UInt64) async throws -> UInt64 {
        try await connection.blockingCall { [store, name, address] in
            var newRevision: UInt64 = 0
            let status = value.withUnsafeBytes {
                kvStore_Update(&newRevision, store.pointer, key, $0.baseAddress, Int32($0.count), revision)
            }
            guard status == NATS_OK else {
                throw Self.revisionError(status, conflict: .wrongRevision,
                                         "update \(key) in bucket \(name) on \(address) at revision \(revision)",
                                         address: address, bucket: name, key: key)
            }
            return newRevision
        }
    }

    /// Deletes the key (a delete marker; earlier revisions stay in the history).
    public func delete(_ key: String) async throws {
        try await connection.blockingCall { [store, name, address] in
            try check(kvStore_Delete(store.pointer, key), "delete \(key) from bucket \(name) on \(address)",
                      address: address, bucket: name, key: key)
        }
    }

    /// Deletes the key only if its latest revision is `revision`: releasing a claim that is
    /// still ours, and not one another host has taken over since.
    ///
    /// nats.c 3.4.1 has no conditional delete; this writes the delete marker itself, as the
    /// key-value protocol defines it (a `KV-Operation: DEL` message on the key's subject,
    /// `$KV.<bucket>.<key>`), with JetStream's expected-last-subject-sequence check.
    /// - Throws: ``NATSError/Code/wrongRevision`` if the key moved on.
    public func delete(_ key: String, ifRevision revision: UInt64) async throws {
        guard revision > 0 else {
            throw NATSError(code: .invalidArgument, message: "delete \(key) from bucket \(name): revision 0 names no write",
                            bucket: name, key: key)
        }
        let jetStream = try await connection.blockingCall { [connection] in try connection.jetStream() }
        try await connection.blockingCall { [name, address] in
            var message: OpaquePointer?
            let what = "delete \(key) from bucket \(name) on \(address) at revision \(revision)"
            try check(natsMsg_Create(&message, "$KV.\(name).\(key)", nil, nil, 0), what, address: address, bucket: name, key: key)
            guard let message else { throw NATSError(code: .library, message: what, bucket: name, key: key) }
            defer { natsMsg_Destroy(message) }
            try check(natsMsgHeader_Set(message, "KV-Operation", "DEL"), what, address: address, bucket: name, key: key)
            var options = jsPubOptions()
            try check(jsPubOptions_Init(&options), what, address: address, bucket: name, key: key)
            options.ExpectLastSubjectSeq = revision
            var errorCode = jsErrCode(rawValue: 0)
            let status = js_PublishMsg(nil, jetStream.pointer, message, &options, &errorCode)
            guard status == NATS_OK else {
                throw errorCode == JSStreamWrongLastSequenceErr
                    ? Self.revisionError(status, conflict: .wrongRevision, what, address: address, bucket: name, key: key)
                    : NATSError(status, what, address: address, bucket: name, key: key)
            }
        }
    }

    /// Purges the key: a purge marker, and every earlier revision removed.
    public func purge(_ key: String) async throws {
        try await connection.blockingCall { [store, name, address] in
            try check(kvStore_Purge(store.pointer, key, nil), "purge \(key) in bucket \(name) on \(address)",
                      address: address, bucket: name, key: key)
        }
    }

    /// Removes the delete and purge markers of deleted keys, with what history they have left
    /// (maintenance: markers pile up in a bucket whose keys come and go). A watch that was away
    /// meanwhile reports such keys as ``KeyValueEntry/Operation-swift.enum/vanished``.
    ///
    /// Not nats.c's `kvStore_PurgeDeletes`, which in 3.4.1 leaks every live entry it reads (and
    /// with it the store and the connection, as LeakSanitizer showed): the same steps, each entry
    /// released — read the latest entry of every key, then purge the stream's subject of each key
    /// whose latest entry is a marker.
    /// - Parameter olderThan: keep markers younger than this; nil removes them all.
    public func removeDeleteMarkers(olderThan age: Duration? = nil) async throws {
        try await connection.blockingCall { [store, name, address, connection] in
            let what = "remove the delete markers of bucket \(name) on \(address)"
            let timeout = max(1, connection.jetStreamTimeout.wholeMilliseconds)
            var options = kvWatchOptions()
            kvWatchOptions_Init(&options)
            options.Timeout = timeout
            var made: OpaquePointer?
            try check(kvStore_WatchAll(&made, store.pointer, &options), what, address: address, bucket: name)
            guard let watcher = made else { return }
            defer { kvWatcher_Destroy(watcher) }
            var markers: [(key: String, created: Int64)] = []
            while true {
                var next: OpaquePointer?
                try check(kvWatcher_Next(&next, watcher, timeout), what, address: address, bucket: name)
                guard let entry = next else { break }  // the latest entry of every key is in
                defer { kvEntry_Destroy(entry) }
                let operation = kvEntry_Operation(entry)
                if operation == kvOp_Delete || operation == kvOp_Purge {
                    markers.append((String(cString: kvEntry_Key(entry)), kvEntry_Created(entry)))
                }
            }
            let jetStream = try connection.jetStream()
            let youngest = age.map { nats_NowInNanoSeconds() - $0.wholeNanoseconds }
            for marker in markers {
                var purge = jsOptions()
                try check(jsOptions_Init(&purge), what, address: address, bucket: name)
                purge.Wait = timeout
                purge.Stream.Purge.Keep = youngest.map { marker.created >= $0 ? 1 : 0 } ?? 0
                let status = "$KV.\(name).\(marker.key)".withCString { subject in
                    purge.Stream.Purge.Subject = subject
                    return js_PurgeStream(jetStream.pointer, "KV_\(name)", &purge, nil)
                }
                try check(status, what, address: address, bucket: name, key: marker.key)
            }
        }
    }

    /// The keys that have a value now (deleted and purged keys left out), in no particular order.
    public func keys() async throws -> [String] {
        try await connection.blockingCall { [store, name, address, connection] in
            var options = kvWatchOptions()
            kvWatchOptions_Init(&options)
            options.Timeout = max(1, connection.jetStreamTimeout.wholeMilliseconds)
            var list = kvKeysList()
            let status = kvStore_Keys(&list, store.pointer, &options)
            if status == NATS_NOT_FOUND { return [] }
            try check(status, "list the keys of bucket \(name) on \(address)", address: address, bucket: name)
            defer { kvKeysList_Destroy(&list) }
            return (0..<Int(list.Count)).compactMap { list.Keys[$0].map { String(cString: $0) } }
        }
    }

    /// The bucket's state: how many values it holds (history included), and its settings.
    public func status() async throws -> Status {
        try await connection.blockingCall { [store, name, address] in
            var status: OpaquePointer?
            try check(kvStore_Status(&status, store.pointer), "read the status of bucket \(name) on \(address)",
                      address: address, bucket: name)
            guard let status else { throw NATSError(code: .library, message: "status of bucket \(name)", bucket: name) }
            defer { kvStatus_Destroy(status) }
            return Status(
                values: kvStatus_Values(status), history: Int(kvStatus_History(status)),
                ttl: kvStatus_TTL(status) > 0 ? .nanoseconds(kvStatus_TTL(status)) : nil)
        }
    }

    public struct Status: Sendable, Equatable {
        /// Values stored, every revision kept in the history counted.
        public var values: UInt64
        public var history: Int
        public var ttl: Duration?
    }

    /// Watches the keys matching `keys` (a key, or a pattern with NATS wildcards: `*` for one
    /// `.`-separated token, `>` for the rest; `>` for all): `handler` first gets each matching
    /// key's latest value or marker, then ``KeyValueWatch/Event/caughtUp``, then every change as
    /// it happens — one at a time, in order, on a nats.c delivery thread (it must not block for
    /// long).
    ///
    /// After every reconnect the watch resynchronises from the keys' current values (see
    /// ``KeyValueWatch``), and says ``KeyValueWatch/Event/caughtUp`` again.
    /// - Throws: ``NATSError`` if the watch cannot be made (bad pattern, no bucket, no server);
    ///   later failures to resynchronise are retried, with a log line.
    public func watch(
        _ keys: String = ">", _ handler: @escaping @Sendable (KeyValueWatch.Event) -> Void
    ) async throws -> KeyValueWatch {
        try await KeyValueWatch.start(bucket: self, keys: keys, handler: handler)
    }

    // MARK: - Errors

    /// The error of a create or update: `conflict` when the server found another revision
    /// ("wrong last sequence: N", JetStream error 10071, which nats.c's key-value calls do not
    /// pass on but as text).
    static func revisionError(
        _ status: natsStatus, conflict: NATSError.Code, _ message: String, address: String, bucket: String, key: String
    ) -> NATSError {
        var error = NATSError(status, message, address: address, bucket: bucket, key: key)
        if status == NATS_ERR, let detail = error.detail, detail.hasPrefix("wrong last sequence") {
            error.code = conflict
            error.currentRevision = revision(inWrongSequence: detail)
            error.message += conflict == .keyExists
                ? ": the key has a value already" + (error.currentRevision.map { ", at revision \($0)" } ?? "")
                : ": the key is " + (error.currentRevision.map { $0 == 0 ? "absent" : "at revision \($0)" } ?? "at another revision")
            error.statusText = nil
            error.detail = nil
        }
        return error
    }

    /// N in "wrong last sequence: N".
    static func revision(inWrongSequence detail: String) -> UInt64? {
        guard let colon = detail.lastIndex(of: ":") else { return nil }
        return UInt64(detail[detail.index(after: colon)...].drop(while: \.isWhitespace))
    }
}

extension NATSConnection {
    /// The bucket `configuration` names: created if it does not exist, bound to if it exists with
    /// the same settings.
    /// - Throws: ``NATSError/Code/bucketConfigurationMismatch`` if it exists with other settings
    ///   (the message says which), or the errors of JetStream being unavailable.
    public func createOrBindBucket(_ configuration: KeyValueBucket.Configuration) async throws -> KeyValueBucket {
        let store = try await blockingCall { [self] in
            let jetStream = try jetStream()
            var config = kvConfig()
            try check(kvConfig_Init(&config), "initialise the bucket configuration", bucket: configuration.name)
            config.History = UInt8(clamping: configuration.history)
            config.TTL = configuration.ttl?.wholeNanoseconds ?? 0
            config.StorageType = configuration.storage == .file ? js_FileStorage : js_MemoryStorage
            config.MaxValueSize = Int32(clamping: configuration.maxValueSize ?? 0)
            config.MaxBytes = Int64(configuration.maxBytes ?? 0)
            config.Replicas = Int32(clamping: configuration.replicas)
            var store: OpaquePointer?
            var status = NATS_OK
            // Two hosts creating the bucket at the same moment: the one that loses the race is
            // told the stream's subjects overlap; asked again, it binds to the bucket just made.
            for _ in 0..<3 {
                status = withOptionalCString(configuration.description) { description in
                    configuration.name.withCString { bucketName in
                        config.Bucket = bucketName
                        config.Description = description
                        return js_CreateKeyValue(&store, jetStream.pointer, &config)
                    }
                }
                guard status != NATS_OK,
                      NATSError(status, "", address: address).detail?.contains("subjects overlap") == true else { break }
            }
            guard status == NATS_OK, let store else {
                var error = NATSError(status, "create or bind bucket \(configuration.name) on \(address)", address: address,
                                      bucket: configuration.name)
                if error.detail == "Existing configuration is different" {
                    error.code = .bucketConfigurationMismatch
                    error.message = "bucket \(configuration.name) on \(address) exists with other settings"
                        + (self.describeExistingBucket(configuration.name, jetStream).map { " (\($0))" } ?? "")
                        + " than asked for (history \(configuration.history), TTL \(configuration.ttl.map { "\($0)" } ?? "none"), "
                        + "\(configuration.storage == .file ? "file" : "memory") storage): use the same settings, or delete the bucket"
                    error.statusText = nil
                    error.detail = nil
                }
                throw error
            }
            return LibraryHandle(store)
        }
        return KeyValueBucket(name: configuration.name, connection: self, store: store)
    }

    /// An existing bucket.
    /// - Throws: ``NATSError/Code/bucketNotFound`` if there is none of that name.
    public func bindBucket(named name: String) async throws -> KeyValueBucket {
        let store = try await blockingCall { [self] in
            let jetStream = try jetStream()
            var store: OpaquePointer?
            let status = js_KeyValue(&store, jetStream.pointer, name)
            guard status == NATS_OK, let store else {
                throw NATSError(status, "bind bucket \(name) on \(address)", code: status == NATS_NOT_FOUND ? .bucketNotFound : nil,
                                address: address, bucket: name)
            }
            return LibraryHandle(store)
        }
        return KeyValueBucket(name: name, connection: self, store: store)
    }

    /// Deletes the bucket and everything in it.
    public func deleteBucket(named name: String) async throws {
        try await blockingCall { [self] in
            let jetStream = try jetStream()
            let status = js_DeleteKeyValue(jetStream.pointer, name)
            try check(status, "delete bucket \(name) on \(address)", code: status == NATS_NOT_FOUND ? .bucketNotFound : nil,
                      address: address, bucket: name)
        }
    }

    /// "history H, TTL T" of an existing bucket, for a message; nil if it cannot be read.
    private func describeExistingBucket(_ name: String, _ jetStream: LibraryHandle) -> String? {
        var store: OpaquePointer?
        guard js_KeyValue(&store, jetStream.pointer, name) == NATS_OK, let store else { return nil }
        defer { kvStore_Destroy(store) }
        var status: OpaquePointer?
        guard kvStore_Status(&status, store) == NATS_OK, let status else { return nil }
        defer { kvStatus_Destroy(status) }
        let ttl = kvStatus_TTL(status)
        return "history \(kvStatus_History(status)), TTL \(ttl > 0 ? "\(Duration.nanoseconds(ttl))" : "none")"
    }
}
