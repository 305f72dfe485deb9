import AgentPluginABI

/// An error between an agent and the runtime: a failed ``AgentContext/send(_:to:expecting:)``,
/// a failed ``AgentContext/publish(_:to:)``, or a failure a handler throws on purpose.
///
/// A handler that throws an `AgentError` fails its message with the error's ``code`` and
/// ``message``; any other error fails it with ``Code/failed`` and the error's description.
///
/// ```swift
/// registry.onRPC(Divide.self) { agent, division, context -> Quotient in
///     guard division.divisor != 0 else {
///         throw AgentError(.invalidArgument, "cannot divide \(division.dividend) by zero")
///     }
///     return Quotient(value: division.dividend / division.divisor)
/// }
/// ```
public struct AgentError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as one of the ABI's status codes.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The `agentd_status` value.
        let status: UInt32

        init(_ status: agentd_status) {
            self.status = status.rawValue
        }

        var cStatus: agentd_status { agentd_status(rawValue: status) }

        /// The input was not acceptable: malformed or unexpected JSON, a bad topic or id.
        public static let invalidArgument = Code(AGENTD_INVALID_ARGUMENT)
        /// The receiver has no handler for the message type.
        public static let unknownMessageType = Code(AGENTD_UNKNOWN_MESSAGE_TYPE)
        /// The target agent type, call or setting does not exist.
        public static let notFound = Code(AGENTD_NOT_FOUND)
        /// Not possible now: shutting down, or no connection to the host.
        public static let unavailable = Code(AGENTD_UNAVAILABLE)
        /// The answer did not come in time.
        public static let timeout = Code(AGENTD_TIMEOUT)
        /// The agent failed; the message says why.
        public static let failed = Code(AGENTD_FAILED)
        /// An API was used wrongly (for example a call answered twice).
        public static let misuse = Code(AGENTD_MISUSE)

        public var description: String {
            switch status {
            case AGENTD_INVALID_ARGUMENT.rawValue: "invalid argument"
            case AGENTD_UNKNOWN_MESSAGE_TYPE.rawValue: "unknown message type"
            case AGENTD_NOT_FOUND.rawValue: "not found"
            case AGENTD_UNAVAILABLE.rawValue: "unavailable"
            case AGENTD_TIMEOUT.rawValue: "timeout"
            case AGENTD_FAILED.rawValue: "failed"
            case AGENTD_MISUSE.rawValue: "misuse"
            default: "status \(status)"
            }
        }
    }

    /// What went wrong.
    public var code: Code
    /// What the caller (or the log) sees.
    public var message: String
    /// The error underneath, if any (an encoding error, for example).
    public var cause: (any Error)?

    /// - Parameters:
    ///   - code: What went wrong.
    ///   - message: A sentence the caller can act on; it becomes the RPC's error text.
    ///   - cause: The error underneath, if any.
    public init(_ code: Code, _ message: String, cause: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.cause = cause
    }

    public var description: String { message }
}
