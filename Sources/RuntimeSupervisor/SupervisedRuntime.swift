import AgentRuntime
import CRuntimeSupport

/// The runtime child's side of ``RuntimeSupervisor``: what `agentd run` does first when the
/// supervisor started it.
public enum SupervisedRuntime {
    /// Ends this process with its supervisor (the kernel kills it when the supervisor's spawning
    /// thread ends, which lives as long as the supervisor), and attaches the crash record the
    /// supervisor handed down (``CrashRecord/attach(fd:)``).
    /// - Returns: false if the supervisor is gone already (then this process should just end).
    /// - Throws: ``RuntimeError`` if `crashRecordFD` is no crash record.
    public static func prepare(supervisorPID: Int32, crashRecordFD: Int32?) throws -> Bool {
        guard agentd_die_with_parent(supervisorPID) == 0 else { return false }
        if let crashRecordFD { try CrashRecord.attach(fd: crashRecordFD) }
        return true
    }
}
