import AgentCore
import Synchronization

/// AutoGen's state requests, served by the agent they name: each runs as a job on the agent's
/// worker between two of its messages (never during a handler), activating it if it is not
/// resident.
extension LocalRouter: AgentStateControl {
    func saveState(of agent: AgentID) async -> Result<[UInt8], StateControlError> {
        await run(on: agent) { instance, done in done(instance.currentState()) }
    }

    func loadState(_ bytes: [UInt8], into agent: AgentID) async -> Result<Void, StateControlError> {
        await run(on: agent) { instance, done in instance.replaceState(bytes, done: done) }
    }

    func deleteState(of agent: AgentID) async -> Result<Void, StateControlError> {
        await run(on: agent) { instance, done in done(instance.forgetState()) }
    }

    /// Runs `body` as a job on agent `id` and returns what it passes to its completion.
    private func run<Value: Sendable>(
        on id: AgentID,
        _ body: @escaping @Sendable (AgentInstance, @escaping @Sendable (Result<Value, StateControlError>) -> Void) -> Void
    ) async -> Result<Value, StateControlError> {
        guard let type = servedType(id.type) else {
            return .failure(StateControlError("agent type '\(id.type)' is not served by this runtime (\(id))"))
        }
        // A request withdrawn (its caller was answered that it timed out) is not applied if
        // its job has not begun by then.
        let withdrawn = Atomic<Bool>(false)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let finish: @Sendable (Result<Value, StateControlError>) -> Void = { continuation.resume(returning: $0) }
                let abandon: @Sendable () -> Void = {
                    finish(.failure(StateControlError("the runtime stopped before the request for \(id) ran")))
                }
                while true {
                    let agent = agent(type: type, key: id.key)
                    let queued = agent.enqueue({ agent in
                        if withdrawn.load(ordering: .acquiring) {
                            finish(.failure(StateControlError("the request for \(id) was withdrawn before it ran")))
                        } else {
                            body(agent, finish)
                        }
                    }, abandon: abandon)
                    if queued { return }
                }
            }
        } onCancel: {
            withdrawn.store(true, ordering: .releasing)
        }
    }

    /// Whether a new version of agent types would take over the state of every resident agent
    /// of those types (``AgentInstance/trialRestore(into:)`` on each, between its messages).
    /// - Returns: the agents whose state the new version refuses, with the reason.
    func trialRestore(_ candidates: [PluginAgentType]) async -> [(AgentID, String)] {
        let byName = Dictionary(candidates.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let affected = agents.compactMap { agent in byName[agent.id.type].map { (agent, $0) } }
        return await withTaskGroup(of: (AgentID, String)?.self) { group in
            for (agent, candidate) in affected where candidate.descriptor.pointee.restore != nil {
                group.addTask {
                    await withCheckedContinuation { continuation in
                        let queued = agent.enqueue({ agent in
                            continuation.resume(returning: agent.trialRestore(into: candidate).map { (agent.id, $0) })
                        }, abandon: { continuation.resume(returning: nil) })
                        if !queued { continuation.resume(returning: nil) }
                    }
                }
            }
            var refused: [(AgentID, String)] = []
            for await result in group { if let result { refused.append(result) } }
            return refused.sorted { "\($0.0)" < "\($1.0)" }
        }
    }
}
