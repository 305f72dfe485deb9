import AgentPluginABI

/// The runtime's `agentd_agent_ref *` of one instance (NULL: no sender), valid from create()
/// until destroy() returns.
struct AgentReference: @unchecked Sendable {
    // @unchecked: an opaque token the runtime lets any thread use while the instance lives.
    let pointer: OpaquePointer?

    static let none = AgentReference(pointer: nil)
}

/// A `agentd_call *` token: one message being handled, answered exactly once.
struct CallToken: @unchecked Sendable {
    // @unchecked: an opaque token the runtime lets any thread answer with.
    let pointer: OpaquePointer?
}
