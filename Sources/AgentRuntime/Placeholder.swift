// AgentRuntime (in progress).
