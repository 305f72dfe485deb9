import AgentCore
import FuzzSupport

extension EnvelopeFuzz {
    /// The input read as each control-plane message a peer sends, by ``ControlPlaneCodec``
    /// (protobuf-c): what the host reads (`RegisterAgentTypeRequest`, `AddSubscriptionRequest`,
    /// `RemoveSubscriptionRequest`, a `ControlMessage`'s routing fields) and what the runtime
    /// reads (`GetSubscriptionsResponse`). Whatever decodes encodes back to itself.
    static func checkControlPlane(_ bytes: UnsafeRawBufferPointer) {
        if let type = try? ControlPlaneCodec.decodeRegisterAgentTypeRequest(bytes) {
            Sink.keep(type)
            let again = roundTrip(ControlPlaneCodec.encodeRegisterAgentTypeRequest(agentType: type)) {
                try ControlPlaneCodec.decodeRegisterAgentTypeRequest($0)
            }
            precondition(again == type, "agent type \(type.debugDescription) came back as \(again.debugDescription)")
        }

        do {
            if let subscription = try ControlPlaneCodec.decodeAddSubscriptionRequest(bytes) {
                checkSubscription(subscription)
                let again = roundTrip(ControlPlaneCodec.encodeAddSubscriptionRequest(subscription)) {
                    try ControlPlaneCodec.decodeAddSubscriptionRequest($0)
                }
                precondition(again == subscription, "subscription \(subscription) came back as \(String(describing: again))")
            }
        } catch {
            Sink.keep(String(describing: error))
        }

        if let id = try? ControlPlaneCodec.decodeRemoveSubscriptionRequest(bytes) {
            Sink.keep(id)
            let again = roundTrip(ControlPlaneCodec.encodeRemoveSubscriptionRequest(id: id)) {
                try ControlPlaneCodec.decodeRemoveSubscriptionRequest($0)
            }
            precondition(again == id, "subscription id \(id.debugDescription) came back as \(again.debugDescription)")
        }

        do {
            let subscriptions = try ControlPlaneCodec.decodeGetSubscriptionsResponse(bytes)
            subscriptions.forEach(checkSubscription)
            let again = roundTrip(ControlPlaneCodec.encodeGetSubscriptionsResponse(subscriptions)) {
                try ControlPlaneCodec.decodeGetSubscriptionsResponse($0)
            }
            precondition(again == subscriptions, "subscriptions \(subscriptions) came back as \(again)")
        } catch {
            Sink.keep(String(describing: error))
        }

        if let header = try? ControlPlaneCodec.decodeControlMessageHeader(bytes) {
            checkControlMessage(header)
        }
    }

    /// A decoded subscription can be described and validated.
    static func checkSubscription(_ subscription: Subscription) {
        Sink.keep(subscription.description)
        do {
            try subscription.validate()
        } catch {
            Sink.keep(String(describing: error))
        }
    }

    /// The routing fields of a control message survive re-encoding, and the host's error
    /// answer to it (when it answers) goes back to the sender with the same `rpc_id`.
    static func checkControlMessage(_ header: ControlPlaneCodec.ControlMessageHeader) {
        let reencoded = ControlPlaneCodec.encodeControlMessage(
            rpcID: header.rpcID, destination: header.destination, respondTo: header.respondTo,
            typeURL: header.typeURL, value: [])
        let again = roundTrip(reencoded) { try ControlPlaneCodec.decodeControlMessageHeader($0) }
        precondition(again == header, "control message \(header) came back as \(again)")

        let sender = "clientid=fuzz"
        guard let answer = ControlPlaneCodec.errorResponse(to: header, error: "not delivered", destination: sender)
        else { return }
        let response = roundTrip(answer) { try ControlPlaneCodec.decodeControlMessageHeader($0) }
        precondition(
            response.rpcID == header.rpcID && response.destination == sender && response.respondTo.isEmpty
                && response.typeURL.hasSuffix("Response"),
            "the answer to \(header) is \(response)")
    }

    /// `decode` applied to bytes the codec encoded: it must not throw.
    static func roundTrip<Value>(_ encoded: [UInt8], _ decode: (UnsafeRawBufferPointer) throws -> Value) -> Value {
        do {
            return try encoded.withUnsafeBytes(decode)
        } catch {
            preconditionFailure("a message ControlPlaneCodec encoded does not decode: \(error)")
        }
    }
}
