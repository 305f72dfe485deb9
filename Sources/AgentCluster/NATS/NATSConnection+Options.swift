extension NATSConnection {
    /// How to reach the NATS servers and how to behave when they go away.
    ///
    /// ```swift
    /// var options = try NATSConnection.Options(servers: "nats://10.0.0.5:4222, nats://10.0.0.6:4222")
    /// options.name = "agentd host a"
    /// options.reconnect.maxAttempts = nil  // forever
    /// let connection = try await NATSConnection.connect(options, logger: logger)
    /// ```
    public struct Options: Sendable {
        /// The servers, each `nats://HOST:PORT` (or `tls://HOST:PORT`). nats.c tries them in a
        /// random order unless ``randomizeServers`` is false.
        public var servers: [String]
        /// The connection's name, as the server's monitoring shows it.
        public var name: String?
        public var randomizeServers = true
        /// How long one attempt to reach one server may take.
        public var connectTimeout: Duration = .seconds(2)
        public var reconnect = Reconnect()
        /// How often the client pings the server to find a dead connection, and after how many
        /// unanswered pings it counts the connection as lost.
        public var pingInterval: Duration = .seconds(2)
        public var maxPingsOutstanding = 2
        /// TLS to the servers: nil for plain TCP.
        public var tls: TLS?
        /// A token the server requires (`authorization { token: … }`).
        public var token: String?
        /// A NATS credentials file (user JWT and NKey seed, as `nsc` writes it).
        public var credentialsFile: String?
        /// How long a JetStream request (every key-value call) waits for the server.
        public var jetStreamTimeout: Duration = .seconds(5)
        /// Threads of this connection that make nats.c's blocking calls (connect, flush, every
        /// key-value call) for async callers.
        public var blockingCallThreads = 2
        /// Message delivery: nil for nats.c's default, a thread per subscription; a number to
        /// deliver the messages of every subscription of this connection from the library's shared
        /// pool, which grows to at least that many threads (process-wide: nats.c has one pool and
        /// it never shrinks). Each subscription stays on one pool thread, so its messages keep their
        /// order; a handler that blocks holds up the other subscriptions on its thread.
        public var messageDeliveryThreads: Int? = 2
        /// Write each publish to the socket at once instead of leaving it to nats.c's flusher
        /// thread, which waits 1 ms for more to batch: with it, a publish reaches a subscriber of
        /// the local server in about 1.0 ms (p50, measured on this machine); with this on, in
        /// about 0.17 ms. Costs a write system call per publish: throughput of many small
        /// publishes falls.
        public var sendImmediately = false
        /// How many messages a subscription may have waiting for its handler before nats.c drops
        /// new ones and reports a slow consumer (an ``NATSConnection/Event/error(_:)``).
        public var maxPendingMessagesPerSubscription = 65_536

        /// Reconnection after a connection that was up is lost. A server that is not there when
        /// connecting is always an error at once, never retried.
        public struct Reconnect: Sendable {
            /// Whether to reconnect at all.
            public var enabled = true
            /// Attempts per server before giving up and closing; nil: forever.
            public var maxAttempts: Int? = nil
            /// How long to wait before trying the same server again.
            public var wait: Duration = .milliseconds(250)
            /// A random delay of up to this much added to ``wait`` (spreads the reconnects of many
            /// clients of one server), for plain and for TLS connections.
            public var jitter: Duration = .milliseconds(100)
            public var jitterTLS: Duration = .seconds(1)
            /// Bytes of publishes kept while reconnecting, sent once reconnected; a publish that does
            /// not fit fails with ``NATSError/Code/reconnectBufferFull``.
            public var bufferSize = 8 << 20

            public init() {}
        }

        /// TLS settings: the authority that signed the servers' certificates, and this client's
        /// own certificate where the servers require one.
        public struct TLS: Sendable {
            /// PEM file of the certificate authority (nil: the system's).
            public var caFile: String?
            /// PEM files of this client's certificate chain and private key.
            public var certificateFile: String?
            public var privateKeyFile: String?
            /// The name the server's certificate must carry, where it differs from the host in the
            /// URL (for example when connecting by address).
            public var expectedHostname: String?

            public init(
                caFile: String? = nil, certificateFile: String? = nil, privateKeyFile: String? = nil,
                expectedHostname: String? = nil
            ) {
                self.caFile = caFile
                self.certificateFile = certificateFile
                self.privateKeyFile = privateKeyFile
                self.expectedHostname = expectedHostname
            }
        }

        public init(servers: [String]) {
            self.servers = servers
        }

        /// - Parameter servers: a comma-separated list, `nats://HOST:PORT[, nats://HOST:PORT …]`.
        /// - Throws: ``NATSError/Code/invalidArgument`` naming an entry that is not a server URL.
        public init(servers: String) throws {
            self.servers = try Self.parseServers(servers)
        }

        /// The servers of a comma-separated list: each trimmed, with a scheme (`nats://`,
        /// `tls://`) and a port; `HOST:PORT` alone is taken as `nats://HOST:PORT`.
        public static func parseServers(_ list: String) throws -> [String] {
            let entries = list.split(separator: ",").map { $0.trimmingWhitespace() }.filter { !$0.isEmpty }
            guard !entries.isEmpty else {
                throw NATSError(code: .invalidArgument, message: "no NATS server in \"\(list)\" (expected nats://HOST:PORT[, …])")
            }
            return try entries.map { entry in
                let parts = entry.split(separator: "://", maxSplits: 1, omittingEmptySubsequences: false)
                let (scheme, rest) = parts.count == 2 ? (parts[0], parts[1]) : ("nats", parts[0])
                let url = "\(scheme)://\(rest)"
                let authority = rest.split(separator: "/", maxSplits: 1).first ?? ""
                let hostAndPort = authority.split(separator: "@").last ?? ""
                guard ["nats", "tls"].contains(scheme), let colon = hostAndPort.lastIndex(of: ":"),
                      colon != hostAndPort.startIndex, let port = Int(hostAndPort[hostAndPort.index(after: colon)...]),
                      (1...65_535).contains(port)
                else {
                    throw NATSError(
                        code: .invalidArgument,
                        message: "\"\(entry)\" is not a NATS server address (expected nats://HOST:PORT)", address: entry)
                }
                return url
            }
        }
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}

extension Duration {
    /// Whole milliseconds (rounded down), as nats.c takes its times.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    /// Whole nanoseconds, as JetStream takes its durations.
    var wholeNanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}
