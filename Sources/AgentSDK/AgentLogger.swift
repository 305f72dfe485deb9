/// Writes lines to the runtime's log, tagged with the plugin and the agent.
///
/// ```swift
/// context.logger.info("greeting \(greeting.name)")
/// ```
public struct AgentLogger: Sendable {
    /// How important a line is.
    public enum Level: Sendable {
        case debug, info, warning, error
    }

    let host: HostFunctions
    let agent: AgentReference

    /// Writes `message` at `level`.
    public func log(_ level: Level, _ message: @autoclosure () -> String) {
        host.log(agent: agent.pointer, level: level, message())
    }

    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func warning(_ message: @autoclosure () -> String) { log(.warning, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }
}
