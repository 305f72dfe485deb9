import CNATS

/// What went wrong in a NATS call: a code to branch on, a message that names what was being done
/// and to what (the server address, subject, bucket or key), and nats.c's own status text and
/// error detail.
///
/// ```swift
/// do {
///     _ = try await claims.create(agentType, value: host)
/// } catch let error as NATSError where error.code == .keyExists {
///     // another host holds it
/// }
/// ```
public struct NATSError: Error, Sendable, CustomStringConvertible {
    /// The kind of failure. Extensible: switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// No server of the list could be reached (refused, unreachable, TLS or authentication
        /// failed). Raised by ``NATSConnection/connect(_:logger:)`` at once: it never waits for a
        /// server to appear.
        public static let connectionFailed = Code("connection failed")
        /// The connection is closed: by ``NATSConnection/close()``, a drain, or because reconnect
        /// attempts ran out.
        public static let connectionClosed = Code("connection closed")
        /// The connection is down and reconnecting; the call needs the server now (a flush).
        public static let disconnected = Code("disconnected")
        /// A publish while reconnecting found the reconnect buffer full
        /// (``NATSConnection/Options/Reconnect/bufferSize``).
        public static let reconnectBufferFull = Code("reconnect buffer full")
        /// No answer in time.
        public static let timeout = Code("timeout")
        /// A request found no subscriber on its subject (the server said so at once).
        public static let noResponders = Code("no responders")
        /// A subject, queue group, key, bucket name or option nats.c refused.
        public static let invalidArgument = Code("invalid argument")
        /// A payload larger than the server accepts.
        public static let payloadTooLarge = Code("payload too large")
        /// ``KeyValueBucket/create(_:value:)`` found the key present.
        public static let keyExists = Code("key exists")
        /// ``KeyValueBucket/update(_:value:ifRevision:)`` or a delete with a revision found the
        /// key at another revision (or absent).
        public static let wrongRevision = Code("wrong revision")
        /// The bucket does not exist (binding to it).
        public static let bucketNotFound = Code("bucket not found")
        /// The bucket exists with another configuration than the one asked for.
        public static let bucketConfigurationMismatch = Code("bucket configuration mismatch")
        /// Any other failure nats.c reported: ``NATSError/statusText`` and
        /// ``NATSError/detail`` say which.
        public static let library = Code("NATS client error")
    }

    public var code: Code
    /// What was being done and to what, for example "publish to agentd.h.b.events on
    /// nats://127.0.0.1:4222".
    public var message: String
    /// nats.c's text for its status code (`natsStatus_GetText`), if the failure came from nats.c.
    public var statusText: String?
    /// nats.c's own error text for the call (`nats_GetLastError`), where it says more than the
    /// status text: a server's JetStream error, a socket error, a file that could not be read.
    public var detail: String?
    /// The server address(es) involved.
    public var address: String?
    public var subject: String?
    public var bucket: String?
    public var key: String?
    /// For ``Code/wrongRevision`` and ``Code/keyExists``: the key's revision now, where the
    /// server said.
    public var currentRevision: UInt64?

    public init(
        code: Code, message: String, statusText: String? = nil, detail: String? = nil, address: String? = nil,
        subject: String? = nil, bucket: String? = nil, key: String? = nil
    ) {
        self.code = code
        self.message = message
        self.statusText = statusText
        self.detail = detail
        self.address = address
        self.subject = subject
        self.bucket = bucket
        self.key = key
    }

    public var description: String {
        var text = message
        if let statusText { text += ": \(statusText)" }
        if let detail, detail != statusText { text += statusText == nil ? ": \(detail)" : " (\(detail))" }
        return text
    }
}

extension NATSError {
    /// An error for a nats.c call that returned `status`.
    ///
    /// nats.c keeps its error detail per thread and never clears it by itself, so the detail is
    /// read only where `withDetail` says the thread's last error belongs to this call: on our own
    /// threads, which clear it before each call (``LibraryErrors/clear()``).
    init(
        _ status: natsStatus, _ message: String, code: Code? = nil, withDetail: Bool = true, address: String? = nil,
        subject: String? = nil, bucket: String? = nil, key: String? = nil
    ) {
        var lastStatus = NATS_OK
        let last = withDetail ? nats_GetLastError(&lastStatus).map { String(cString: $0) } : nil
        self.init(
            code: code ?? Self.code(for: status), message: message, statusText: String(cString: natsStatus_GetText(status)),
            detail: lastStatus == status ? last.flatMap(Self.withoutSourceLocation) : nil, address: address,
            subject: subject, bucket: bucket, key: key)
    }

    /// nats.c's error text without the source location it starts with ("(js.c:535): wrong last
    /// sequence: 1" → "wrong last sequence: 1"); nil if nothing is left.
    static func withoutSourceLocation(_ text: String) -> String? {
        var rest = Substring(text)
        if rest.hasPrefix("("), let close = rest.firstIndex(of: ")"), rest[..<close].contains(".c:"),
           rest[rest.index(after: close)...].hasPrefix(":") {
            rest = rest[rest.index(after: close)...].drop { $0 == ":" || $0 == " " }
        }
        return rest.isEmpty ? nil : String(rest)
    }

    static func code(for status: natsStatus) -> Code {
        switch status {
        case NATS_CONNECTION_CLOSED: .connectionClosed
        case NATS_CONNECTION_DISCONNECTED: .disconnected
        case NATS_TIMEOUT: .timeout
        case NATS_NO_RESPONDERS: .noResponders
        case NATS_INVALID_ARG, NATS_INVALID_SUBJECT, NATS_INVALID_QUEUE_NAME, NATS_ADDRESS_MISSING: .invalidArgument
        case NATS_INSUFFICIENT_BUFFER: .reconnectBufferFull
        case NATS_MAX_PAYLOAD: .payloadTooLarge
        case NATS_NO_SERVER, NATS_CONNECTION_AUTH_FAILED, NATS_SSL_ERROR, NATS_SECURE_CONNECTION_WANTED,
             NATS_SECURE_CONNECTION_REQUIRED:
            .connectionFailed
        default: .library
        }
    }
}

/// nats.c's per-thread error detail.
enum LibraryErrors {
    /// Forgets the calling thread's last nats.c error, so that the next failure's detail is its
    /// own. nats.c has no public call to clear it; releasing the thread's nats.c memory does (the
    /// next error allocates it again). Only on threads of ours: nats.c forbids it on its own.
    static func clear() {
        nats_ReleaseThreadMemory()
    }
}
