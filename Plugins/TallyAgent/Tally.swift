// TallyAgent: an example Swift plugin whose agents keep their state.
//
// Agent type `tally`, subscribed to topic type `tally-items`. Each agent (one per key: a shop,
// a conversation, a user) keeps a total per item, and the runtime keeps those totals in its
// state store: they survive the runtime stopping or being killed, and the agent being retired
// when idle.
//
//   RPC `TallyAdd` {"item": I, "amount": N}   adds N to item I, answers `TallyTotals`
//   RPC `TallyGet` {}                         answers `TallyTotals`, changing nothing
//   event `TallyAdd` on (tally-items, K)      agent K adds N to item I
//
//   TallyTotals {"key": K, "totals": {I: total, ...}, "total": <sum of the totals>}
//
// The Python side of the same conversation:
//
//     @dataclass
//     class TallyAdd:
//         item: str
//         amount: int
//
//     @dataclass
//     class TallyGet:
//         pass
//
//     @dataclass
//     class TallyTotals:
//         key: str
//         totals: dict[str, int]
//         total: int
//
// The instance's life shows at debug level in the runtime's log ([log] level = debug): created
// when a message comes for an agent that is not resident, restored from the store, released
// when the runtime retires it (or unloads the plugin).

import AgentSDK

/// Adds `amount` to `item`'s total.
struct TallyAdd: AgentMessage {
    var item: String
    var amount: Int
}

/// Asks for the totals.
struct TallyGet: AgentMessage {}

/// The totals of one agent.
struct TallyTotals: AgentMessage {
    var key: String
    var totals: [String: Int]
    var total: Int
}

/// Keeps a total per item, for one key.
final class Tally: StatefulAgent {
    /// What the state store keeps: `{"totals": {"apples": 3}}`.
    struct State: Codable {
        var totals: [String: Int]
    }

    static let type = "tally"
    static let typeDescription: String? = "Keeps a total per item: TallyAdd {item, amount}, TallyGet → TallyTotals."
    static let subscriptions: [Subscription] = [.topicType("tally-items")]

    let context: AgentContext
    var totals: [String: Int] = [:]

    init(context: AgentContext) {
        self.context = context
        context.logger.debug("tally \(context.agentID.key): created")
    }

    deinit {
        context.logger.debug("tally \(context.agentID.key): released with \(totals.count) item(s)")
    }

    func snapshot() -> State { State(totals: totals) }

    /// Refuses totals `add` could not have made (an item without a name): the runtime then keeps
    /// the stored state and answers the agent's messages with an error until it is replaced.
    func restore(_ state: State) throws {
        guard !state.totals.keys.contains("") else {
            throw AgentError(.invalidArgument, "tally \(context.agentID.key): the stored totals name an item \"\"")
        }
        totals = state.totals
        context.logger.debug("tally \(context.agentID.key): restored \(totals.count) item(s)")
    }

    var answer: TallyTotals {
        TallyTotals(key: context.agentID.key, totals: totals, total: totals.values.reduce(0, +))
    }

    /// Adds, refusing an empty item name and a total that would overflow.
    func add(_ message: TallyAdd) throws {
        guard !message.item.isEmpty else { throw AgentError(.invalidArgument, "tally: the item name is empty") }
        let (sum, overflow) = totals[message.item, default: 0].addingReportingOverflow(message.amount)
        guard !overflow else {
            throw AgentError(.invalidArgument, "tally: adding \(message.amount) to \(message.item) would overflow; nothing was added")
        }
        totals[message.item] = sum
    }

    static func handlers(_ registry: inout HandlerRegistry<Tally>) {
        registry.onRPC(TallyAdd.self) { tally, add, context in
            try tally.add(add)
            context.stateChanged()  // the runtime stores the totals before the caller gets them
            return tally.answer
        }
        registry.on(TallyAdd.self) { tally, add, context in
            try tally.add(add)
            context.stateChanged()
        }
        registry.onRPC(TallyGet.self) { tally, _, _ in
            tally.answer  // reads only: no stateChanged(), no checkpoint
        }
    }
}

/// The entry the runtime calls when it loads the plugin.
@_cdecl("agentd_plugin_entry")
public func agentdPluginEntry(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
    Plugin(name: "tally-plugin", version: "1.0.0", agents: [Tally.self]).export(host, plugin)
}
