// AgentConfig: the INI configuration (in progress).
