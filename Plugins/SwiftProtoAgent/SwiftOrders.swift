// SwiftProtoAgent: a Swift plugin that speaks protobuf with other agents, AutoGen's Python agents
// included, through AgentSDKProtobuf. The schema is ProtoAgent's (Plugins/ProtoAgent/proto/
// sample.proto), shared with the C plugin and with Python; sample.pb.swift beside this file is
// generated from it by scripts/generate-swift-protos (never edit it).
//
// Plugin "swift-proto-plugin" 1.0.0 offers one agent type, `swift-orders`, subscribed to topic
// type "swift-orders" (an event on topic ("swift-orders", S) goes to agent swift-orders/S):
//
//   Event `agentd.samples.Order` on topic ("swift-orders", S)
//     -> publishes `agentd.samples.OrderReceipt` to ("swift-order-receipts", S), as protobuf.
//   RPC `agentd.samples.Order`
//     -> answers `agentd.samples.OrderReceipt`, in the request's encoding: protobuf to a caller
//        that sent protobuf, protobuf's JSON mapping to one that sent JSON (AutoGen's
//        send_message, which sends every RPC as JSON).
//
// The receipt, as ProtoAgent's: order_id = the order's id; total_items = quantity * number of
// items; note = "swift-orders/<agent key>: <number of items> item(s) x <quantity>". A negative
// quantity, or a total that does not fit an int32, is refused as an invalid argument.
import AgentSDK
import AgentSDKProtobuf

typealias Order = Agentd_Samples_Order
typealias OrderReceipt = Agentd_Samples_OrderReceipt

final class SwiftOrders: Agent {
    static let type = "swift-orders"
    static let typeDescription: String? = "receipts for agentd.samples.Order, in protobuf"
    static let subscriptions: [Subscription] = [.topicType("swift-orders")]

    /// Where receipts of published orders go, with the order's topic source.
    static let receiptTopicType = "swift-order-receipts"

    init(context: AgentContext) {}

    static func handlers(_ registry: inout HandlerRegistry<SwiftOrders>) {
        registry.on(Order.self) { _, order, context in
            let source = context.topic?.source ?? context.agentID.key
            try context.publish(receipt(for: order, by: context.agentID), to: TopicID(type: receiptTopicType, source: source))
        }
        registry.onRPC(Order.self) { _, order, context in
            try receipt(for: order, by: context.agentID)
        }
    }

    static func receipt(for order: Order, by agent: AgentID) throws -> OrderReceipt {
        guard order.quantity >= 0 else {
            throw AgentError(.invalidArgument, "order \(order.id): quantity \(order.quantity) is negative")
        }
        let (total, overflow) = order.quantity.multipliedReportingOverflow(by: Int32(clamping: order.items.count))
        guard !overflow, order.items.count <= Int32.max else {
            throw AgentError(
                .invalidArgument, "order \(order.id): \(order.items.count) item(s) x \(order.quantity) does not fit an int32")
        }
        return OrderReceipt.with {
            $0.orderID = order.id
            $0.totalItems = total
            $0.note = "\(agent): \(order.items.count) item(s) x \(order.quantity)"
        }
    }
}

@_cdecl("agentd_plugin_entry")
public func agentdPluginEntry(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
    Plugin(name: "swift-proto-plugin", version: "1.0.0", agents: [SwiftOrders.self]).export(host, plugin)
}
