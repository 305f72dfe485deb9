import CGRPC

/// A gRPC status code (the numbers of `grpc/status.h`, which every gRPC implementation shares).
public struct StatusCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let ok = StatusCode(rawValue: 0)
    public static let cancelled = StatusCode(rawValue: 1)
    public static let unknown = StatusCode(rawValue: 2)
    public static let invalidArgument = StatusCode(rawValue: 3)
    public static let deadlineExceeded = StatusCode(rawValue: 4)
    public static let notFound = StatusCode(rawValue: 5)
    public static let alreadyExists = StatusCode(rawValue: 6)
    public static let permissionDenied = StatusCode(rawValue: 7)
    public static let resourceExhausted = StatusCode(rawValue: 8)
    public static let failedPrecondition = StatusCode(rawValue: 9)
    public static let aborted = StatusCode(rawValue: 10)
    public static let outOfRange = StatusCode(rawValue: 11)
    public static let unimplemented = StatusCode(rawValue: 12)
    public static let `internal` = StatusCode(rawValue: 13)
    public static let unavailable = StatusCode(rawValue: 14)
    public static let dataLoss = StatusCode(rawValue: 15)
    public static let unauthenticated = StatusCode(rawValue: 16)

    private static let names = [
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
        "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
        "UNAUTHENTICATED",
    ]

    /// The canonical upper-case name, for example `INVALID_ARGUMENT`.
    public var description: String {
        Self.names.indices.contains(rawValue) ? Self.names[rawValue] : "STATUS_\(rawValue)"
    }

    var cValue: grpc_status_code { grpc_status_code(rawValue: Int32(truncatingIfNeeded: rawValue)) }
}

/// The outcome of a call: a code and a message meant for people.
public struct Status: Sendable, Hashable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String

    public init(_ code: StatusCode, _ message: String = "") {
        self.code = code
        self.message = message
    }

    public static let ok = Status(.ok)

    public var isOK: Bool { code == .ok }

    public var description: String { message.isEmpty ? "\(code)" : "\(code): \(message)" }
}

/// An error raised by the transport: a failed call (with its status) or a failure to set up
/// a server, channel or call.
public struct TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String, Hashable, Sendable {
            case callFailed = "call failed"
            case bindFailed = "cannot listen"
            case invalidArgument = "invalid argument"
            case shutDown = "shut down"
        }
        private let value: Value
        private init(_ value: Value) { self.value = value }

        /// The call ended with a non-OK status (see ``TransportError/status``).
        public static let callFailed = Code(.callFailed)
        /// A server could not listen on the requested address.
        public static let bindFailed = Code(.bindFailed)
        /// An argument (address, metadata key, method name) was not acceptable.
        public static let invalidArgument = Code(.invalidArgument)
        /// The server or channel is shutting down or shut down.
        public static let shutDown = Code(.shutDown)

        public var description: String { value.rawValue }
    }

    public var code: Code
    /// The call's status, for ``Code/callFailed``; otherwise a status describing the failure.
    public var status: Status
    public var message: String

    public init(code: Code, message: String, status: Status? = nil) {
        self.code = code
        self.message = message
        self.status = status ?? Status(.unknown, message)
    }

    /// A failed call.
    public static func call(_ status: Status) -> TransportError {
        TransportError(code: .callFailed, message: status.description, status: status)
    }

    public var description: String { "\(code): \(message)" }
}
