—
$9e8d7c6b-5a49-4838-a726-15f4e3d2c1b0shop/eu1.0"orders.placed*
agagentsenderkeyo-1*
agagentsendertypeorders*
	agmsgkind	publish*+
datacontenttypeapplication/x-protobuf*

dataschemaagents.AgentIdB3
"type.googleapis.com/agents.AgentId
orderso-1