import Testing

@Suite("Control channel: state save/load messages routed by destination")
struct ControlChannelTests {
    @Test("a message to agentid=<type>/<key> reaches the control channel of the type's owner, unchanged, and the answer to clientid=<id> comes back unchanged")
    func saveStateRoundTrip() async throws {
        try await withHost { harness in
            let owner = try await harness.worker("owner")
            let asker = try await harness.worker("asker")
            let bystander = try await harness.worker("bystander")
            try await owner.register("alpha")
            let ownerControl = try await ControlStream.open(for: owner)
            let askerControl = try await ControlStream.open(for: asker)
            let bystanderControl = try await ControlStream.open(for: bystander)

            let request = ControlMessage(
                rpcID: "save-1", destination: "agentid=alpha/key/with/slash", respondTo: "clientid=\(asker.clientID)",
                rpcMessage: ControlMessage.saveStateRequest(AgentRef("alpha", "key/with/slash")))
            try askerControl.send(request)
            let delivered = try await ownerControl.waitForMessage(rpcID: "save-1")
            #expect(byteDifference(delivered.bytes, request.bytes) == nil)

            let answer = ControlMessage(
                rpcID: "save-1", destination: "clientid=\(asker.clientID)",
                rpcMessage: ControlMessage.saveStateResponse(state: #"{"count": 3}"#))
            try ownerControl.send(answer)
            let answered = try await askerControl.waitForMessage(rpcID: "save-1")
            #expect(byteDifference(answered.bytes, answer.bytes) == nil)

            // Only the addressed streams saw anything: a later message to the bystander
            // arrives alone.
            let marker = ControlMessage(
                rpcID: "marker", destination: "clientid=\(bystander.clientID)",
                rpcMessage: ControlMessage.loadStateRequest(AgentRef("x", "y"), state: "{}"))
            try askerControl.send(marker)
            try ownerControl.send(marker)
            let seen = try await bystanderControl.waitFor("both markers") { $0.messages.count >= 2 }
            #expect(seen.messages.map(\.rpcID) == ["marker", "marker"])
            #expect(ownerControl.log.value.messages.map(\.rpcID) == ["save-1"])
            #expect(askerControl.log.value.messages.map(\.rpcID) == ["save-1"])
        }
    }

    @Test("a message to clientid=<id> reaches that client's control channel unchanged")
    func clientIDDestination() async throws {
        try await withHost { harness in
            let sender = try await harness.worker("sender")
            let receiver = try await harness.worker("receiver")
            let senderControl = try await ControlStream.open(for: sender)
            let receiverControl = try await ControlStream.open(for: receiver)
            let message = ControlMessage(
                rpcID: "load-1", destination: "clientid=\(receiver.clientID)", respondTo: "clientid=\(sender.clientID)",
                rpcMessage: ControlMessage.loadStateRequest(AgentRef("alpha", "k"), state: #"{"n": 1}"#))
            try senderControl.send(message)
            let delivered = try await receiverControl.waitForMessage(rpcID: "load-1")
            #expect(byteDifference(delivered.bytes, message.bytes) == nil)
        }
    }

    @Test("an unroutable SaveStateRequest is answered to its sender with a SaveStateResponse carrying an error", arguments: [
        "agentid=nobody/k", "clientid=no-such-client", "nonsense", "agentid=bad type/k",
    ])
    func unroutableSaveState(destination: String) async throws {
        try await withHost { harness in
            let sender = try await harness.worker("sender")
            let control = try await ControlStream.open(for: sender)
            try control.send(ControlMessage(
                rpcID: "save-x", destination: destination, respondTo: "clientid=\(sender.clientID)",
                rpcMessage: ControlMessage.saveStateRequest(AgentRef("nobody", "k"))))
            let answer = try await control.waitForMessage(rpcID: "save-x")
            let any = try #require(answer.rpcMessage)
            #expect(any.typeURL == "type.googleapis.com/agents.SaveStateResponse")
            let response = try ProtoFields(any.value)
            #expect(!response.string(2).isEmpty, "SaveStateResponse.error (field 2) must say why")
            #expect(response.string(1).isEmpty)
        }
    }

    @Test("an unroutable LoadStateRequest is answered with a LoadStateResponse carrying an error")
    func unroutableLoadState() async throws {
        try await withHost { harness in
            let sender = try await harness.worker("sender")
            let control = try await ControlStream.open(for: sender)
            try control.send(ControlMessage(
                rpcID: "load-x", destination: "agentid=nobody/k", respondTo: "clientid=\(sender.clientID)",
                rpcMessage: ControlMessage.loadStateRequest(AgentRef("nobody", "k"), state: "{}")))
            let answer = try await control.waitForMessage(rpcID: "load-x")
            #expect(answer.rpcMessage?.typeURL == "type.googleapis.com/agents.LoadStateResponse")
            let response = try ProtoFields(try #require(answer.rpcMessage).value)
            #expect(!response.string(1).isEmpty, "LoadStateResponse.error (field 1) must say why")
        }
    }

    @Test("a message to a registered type whose owner has no control channel is answered with an error")
    func ownerWithoutControlChannel() async throws {
        try await withHost { harness in
            let owner = try await harness.worker("owner")
            let sender = try await harness.worker("sender")
            try await owner.register("alpha")
            let control = try await ControlStream.open(for: sender)
            try control.send(ControlMessage(
                rpcID: "save-y", destination: "agentid=alpha/k", respondTo: "clientid=\(sender.clientID)",
                rpcMessage: ControlMessage.saveStateRequest(AgentRef("alpha", "k"))))
            let answer = try await control.waitForMessage(rpcID: "save-y")
            let response = try ProtoFields(try #require(answer.rpcMessage).value)
            #expect(!response.string(2).isEmpty)
        }
    }
}
