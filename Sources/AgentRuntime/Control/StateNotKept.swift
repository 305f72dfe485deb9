import AgentCore

/// The ``AgentStateControl`` of a runtime that keeps no agent state: every save, load and
/// delete is answered with an error saying so. What ``AgentRuntime`` uses until the state
/// store is wired in (see `AgentRuntime.stateControl`).
struct StateNotKept: AgentStateControl {
    func saveState(of agent: AgentID) async -> Result<[UInt8], StateControlError> {
        .failure(Self.error(agent))
    }

    func loadState(_ bytes: [UInt8], into agent: AgentID) async -> Result<Void, StateControlError> {
        .failure(Self.error(agent))
    }

    func deleteState(of agent: AgentID) async -> Result<Void, StateControlError> {
        .failure(Self.error(agent))
    }

    private static func error(_ agent: AgentID) -> StateControlError {
        StateControlError("state is not kept by this runtime (request for \(agent))")
    }
}
