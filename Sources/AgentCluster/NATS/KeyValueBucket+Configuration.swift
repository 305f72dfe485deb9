import CNATS

extension KeyValueBucket {
    /// How a bucket is made: what ``NATSConnection/createOrBindBucket(_:)`` creates, or checks an
    /// existing bucket against.
    public struct Configuration: Sendable, Equatable {
        /// Letters, digits, `_` and `-`.
        public var name: String
        public var description: String?
        /// Values kept per key, the latest included (1…64).
        public var history = 1
        /// How long a value is kept after it was written; nil: for ever. Bucket-wide: NATS 2.9 has
        /// no per-key TTL, and a value that expires tells no watcher.
        public var ttl: Duration?
        public var storage = Storage.file
        /// The largest value, in bytes (nil: the server's limit).
        public var maxValueSize: Int?
        /// The most the bucket may hold, in bytes (nil: no limit).
        public var maxBytes: Int?
        public var replicas = 1

        public enum Storage: Sendable, Equatable {
            /// On disk: survives a restart of the server.
            case file
            /// In memory: gone when the server restarts.
            case memory
        }

        public init(name: String, history: Int = 1, ttl: Duration? = nil, storage: Storage = .file) {
            self.name = name
            self.history = history
            self.ttl = ttl
            self.storage = storage
        }
    }
}
