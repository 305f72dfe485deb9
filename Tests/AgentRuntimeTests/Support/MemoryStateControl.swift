@testable import AgentRuntime
import AgentCore

/// An ``AgentStateControl`` that keeps states in memory, standing in for the runtime's store in
/// the control channel's tests: what is loaded is what is saved; delete forgets.
///
/// Two keys behave specially, for the deadline tests: an agent keyed `stuck` never answers
/// (until its call is cancelled), and one keyed `slow` answers after ``slowDelay``.
actor MemoryStateControl: AgentStateControl {
    static let slowDelay: Duration = .milliseconds(200)

    private var states: [AgentID: [UInt8]] = [:]

    init(_ states: [AgentID: [UInt8]] = [:]) { self.states = states }

    func saveState(of agent: AgentID) async -> Result<[UInt8], StateControlError> {
        await behave(agent)
        guard let state = states[agent] else { return .failure(StateControlError("no state kept for \(agent)")) }
        return .success(state)
    }

    func loadState(_ bytes: [UInt8], into agent: AgentID) async -> Result<Void, StateControlError> {
        await behave(agent)
        if bytes == Array("refuse me".utf8) { return .failure(StateControlError("\(agent) refused the state")) }
        states[agent] = bytes
        return .success(())
    }

    func deleteState(of agent: AgentID) async -> Result<Void, StateControlError> {
        await behave(agent)
        states[agent] = nil
        return .success(())
    }

    private func behave(_ agent: AgentID) async {
        switch agent.key {
        case "stuck": try? await Task.sleep(for: .seconds(3600))
        case "slow": try? await Task.sleep(for: Self.slowDelay)
        default: break
        }
    }
}
