
q
7
orderso-1*]
agents.AgentIdapplication/x-protobuf3
"type.googleapis.com/agents.AgentId
orderso-1