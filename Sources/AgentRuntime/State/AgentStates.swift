import AgentCore
import AgentState
import CoreMetrics
import Logging
import Synchronization

/// Agents' state between activations: the store, the writer that checkpoints into it in
/// group commits, and counts of what happened (for logs and benchmarks).
final class AgentStates: Sendable {
    let store: any StateStore
    let writer: CheckpointWriter
    /// The store as an operator names it (its file).
    let name: String
    let logger: Logger
    private let failures = Atomic<Int>(0)
    let activations = Atomic<Int>(0)

    /// - Parameter inlineCommits: commit on the handler's thread when no commit runs (for a
    ///   store whose commits do not wait for the disk; see ``CheckpointWriter``).
    /// - Parameter checkpointLatency: records each checkpoint's time to its commit (metrics).
    init(store: any StateStore, name: String, inlineCommits: Bool, checkpointLatency: CoreMetrics.Timer? = nil,
         logger: Logger) {
        self.store = store
        self.name = name
        self.logger = logger
        writer = CheckpointWriter(store: store, inline: inlineCommits, latency: checkpointLatency)
    }

    /// A checkpoint that could not be written: counted, and logged (the first, then every
    /// 100th) with the store's reason.
    func checkpointFailed(_ agent: AgentID, _ error: StateStoreError) {
        let count = failures.wrappingAdd(1, ordering: .relaxed).newValue
        if count == 1 || count % 100 == 0 {
            logger.error("checkpoint failed: the agent's state was not saved; its answer is an error and it restarts from the stored state", metadata: [
                "agent.id": "\(agent)", "store": "\(name)", "reason": "\(error.message)", "code": "\(error.code)",
                "failures": "\(count)",
            ])
        }
    }

    var failureCount: Int { failures.load(ordering: .relaxed) }

    func stop() { writer.stop() }
}
