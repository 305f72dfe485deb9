@_spi(MessageFormats) import AgentSDK
import SwiftProtobuf

extension HandlerRegistry {
    /// Registers the handler of events carrying the protobuf message `M`.
    ///
    /// The event's message type is `M`'s full name (`agentd.samples.Order`, as AutoGen names a
    /// protobuf class); it is read from `application/x-protobuf`, or from protobuf's JSON
    /// mapping when it arrives as `application/json`.
    ///
    /// ```swift
    /// registry.on(Agentd_Samples_Order.self) { agent, order, context in
    ///     let receipt = Agentd_Samples_OrderReceipt.with { $0.orderID = order.id }
    ///     try context.publish(receipt, to: TopicID(type: "order-receipts", source: context.agentID.key))
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - type: The generated message type.
    ///   - handler: Called with the instance, the decoded event and its context. Throwing logs
    ///     the error (an event has nobody to answer).
    public mutating func on<M: SwiftProtobuf.Message>(
        _ type: M.Type,
        _ handler: @escaping @Sendable (A, M, MessageContext) async throws -> Void
    ) {
        on(messageType: M.protoMessageName, contentTypes: ProtobufCoding.contentTypes) { agent, payload, contentType, context in
            try await handler(agent, try ProtobufCoding.decode(M.self, from: payload, as: contentType), context)
        }
    }

    /// Registers the handler of RPCs carrying the protobuf message `M`; the protobuf message it
    /// returns is the answer.
    ///
    /// The answer goes back in the request's encoding: binary to a caller that sent
    /// `application/x-protobuf`, protobuf's JSON mapping to one that sent `application/json`
    /// (as AutoGen's `send_message` does for every RPC).
    ///
    /// - Parameters:
    ///   - type: The request's generated message type.
    ///   - handler: Called with the instance, the decoded request and its context; returns the
    ///     answer. Throwing answers the caller with an error, as for ``HandlerRegistry/onRPC(_:_:)``.
    public mutating func onRPC<M: SwiftProtobuf.Message, R: SwiftProtobuf.Message>(
        _ type: M.Type,
        _ handler: @escaping @Sendable (A, M, MessageContext) async throws -> R
    ) {
        onRPC(messageType: M.protoMessageName, contentTypes: ProtobufCoding.contentTypes) {
            agent, payload, contentType, context in
            let answer = try await handler(agent, try ProtobufCoding.decode(M.self, from: payload, as: contentType), context)
            return try ProtobufCoding.encode(answer, as: contentType)
        }
    }
}
