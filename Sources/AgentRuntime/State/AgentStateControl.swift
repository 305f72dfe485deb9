import AgentCore

/// What AutoGen's state protocol asks of a runtime's agents (the control channel's
/// `SaveStateRequest` / `LoadStateRequest`, and our `DeleteStateRequest`). Each call returns
/// — never hangs: an agent busy in a pending call is served after it, within the handler
/// timeout, or the call returns an error saying so.
protocol AgentStateControl: Sendable {
    /// The agent's state as its plugin's `snapshot` writes it (activating the agent from the
    /// store first when it is not resident).
    func saveState(of agent: AgentID) async -> Result<[UInt8], StateControlError>

    /// Replaces the agent's state: the instance is restored from `bytes` (created first when
    /// not resident), and the state is checkpointed into the store.
    func loadState(_ bytes: [UInt8], into agent: AgentID) async -> Result<Void, StateControlError>

    /// Forgets the agent: its resident instance is destroyed without a checkpoint and its
    /// stored state deleted (an agent whose stored state could not be restored is served
    /// afresh afterwards).
    func deleteState(of agent: AgentID) async -> Result<Void, StateControlError>
}

/// Why a state request failed, in words the requester sees (the response's `error`).
struct StateControlError: Error, Sendable, Hashable, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
