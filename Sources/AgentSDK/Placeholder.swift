// AgentSDK (in progress).
