import AgentSDK

// Agents the SDK's tests drive through the C ABI.

struct Greeting: AgentMessage {
    var name: String
}

struct GreetingReply: AgentMessage {
    var text: String
}

/// The example greeter, as a plugin author writes it.
final class Greeter: Agent {
    static let type = "greeter"
    static let typeDescription: String? = "Greets."
    static let subscriptions: [Subscription] = [.topicType("greetings"), .topicPrefix("greeter:")]

    let greeting: String

    init(context: AgentContext) {
        greeting = context.setting("greeting") ?? "Hello"
    }

    static func handlers(_ registry: inout HandlerRegistry<Greeter>) {
        registry.on(Greeting.self) { greeter, greeting, context in
            let source = context.topic?.source ?? context.agentID.key
            try context.publish(GreetingReply(text: "\(greeter.greeting), \(greeting.name)!"),
                                to: TopicID(type: "greeting-replies", source: source))
        }
        registry.onRPC(Greeting.self) { greeter, greeting, _ in
            GreetingReply(text: "\(greeter.greeting), \(greeting.name)!")
        }
    }
}

struct Echo: AgentMessage {
    var text: String
}

/// Asks `target` (an `Echo` RPC) and answers with what came back.
struct Relay: AgentMessage {
    var target: String
    var text: String
}

/// What a handler saw of its delivery.
struct Whoami: AgentMessage {}

struct Identity: AgentMessage {
    var agent: String
    var sender: String?
    var topic: String?
    var isRPC: Bool
}

enum Refusal: Error, CustomStringConvertible {
    case notToday

    var description: String { "not today, thank you" }
}

struct Refuse: AgentMessage {
    var politely: Bool
}

/// Only ever an event.
struct Note: AgentMessage {
    var text: String
}

/// A pydantic-style message: unknown keys are fine.
struct Lenient: AgentMessage {
    static var acceptsUnknownKeys: Bool { true }
    var value: Int
}

/// One of everything a handler can meet.
final class Workbench: Agent {
    static let type = "workbench"

    let context: AgentContext

    init(context: AgentContext) {
        self.context = context
    }

    static func handlers(_ registry: inout HandlerRegistry<Workbench>) {
        registry.onRPC(Echo.self) { _, echo, _ in echo }
        registry.onRPC(Relay.self) { _, relay, context -> Echo in
            try await context.send(Echo(text: relay.text), to: AgentID(type: relay.target, key: "default"),
                                   expecting: Echo.self)
        }
        registry.onRPC(Whoami.self) { _, _, context in
            Identity(agent: context.agentID.description, sender: context.sender?.description,
                     topic: context.topic?.description, isRPC: context.isRPC)
        }
        registry.on(Whoami.self) { _, _, context in
            let identity = Identity(agent: context.agentID.description, sender: context.sender?.description,
                                    topic: context.topic?.description, isRPC: context.isRPC)
            try context.publish(identity, to: TopicID(type: "identities", source: "default"))
        }
        registry.onRPC(Refuse.self) { _, refuse, _ -> Echo in
            if refuse.politely { throw AgentError(.invalidArgument, "politely refused") }
            throw Refusal.notToday
        }
        registry.onRPC(Lenient.self) { _, lenient, _ in lenient }
        registry.on(Echo.self) { _, echo, context in
            context.logger.warning("heard \(echo.text)")
        }
        registry.on(Note.self) { _, _, _ in }
    }
}

struct Increment: AgentMessage {
    var by: Int
}

struct Count: AgentMessage {
    var count: Int
}

struct GetCount: AgentMessage {}

/// State that survives a reload.
final class Counter: StatefulAgent {
    /// Shared: several runtimes may serve it (its descriptor says so).
    static let shared = true
    struct State: Codable {
        var count: Int
    }

    static let type = "counter"
    var count = 0

    init(context: AgentContext) {}

    func snapshot() -> State { State(count: count) }

    func restore(_ state: State) { count = state.count }

    static func handlers(_ registry: inout HandlerRegistry<Counter>) {
        registry.on(Increment.self) { counter, increment, _ in counter.count += increment.by }
        registry.onRPC(GetCount.self) { counter, _, _ in Count(count: counter.count) }
    }
}

struct Broken: Error, CustomStringConvertible {
    var description: String { "the widget is missing" }
}

/// An agent whose creation fails.
final class Unbuildable: Agent {
    static let type = "unbuildable"

    init(context: AgentContext) throws {
        throw Broken()
    }

    static func handlers(_ registry: inout HandlerRegistry<Unbuildable>) {
        registry.on(Echo.self) { _, _, _ in }
    }
}

/// Counts one more of `item`.
struct Tally: AgentMessage {
    var item: String
}

struct GetTallies: AgentMessage {}

struct Tallies: AgentMessage {
    var counts: [String: Int]
}

/// State kept per item in a dictionary; says which messages change it.
final class Tallier: StatefulAgent {
    struct State: Codable {
        var counts: [String: Int]
    }

    static let type = "tallier"
    static let subscriptions: [Subscription] = [.topicType("tallies")]
    var counts: [String: Int] = [:]
    /// Makes the next snapshot throw.
    var failNextSnapshot = false

    init(context: AgentContext) {}

    func snapshot() throws -> State {
        if failNextSnapshot {
            failNextSnapshot = false
            throw Broken()
        }
        return State(counts: counts)
    }

    func restore(_ state: State) { counts = state.counts }

    static func handlers(_ registry: inout HandlerRegistry<Tallier>) {
        registry.onRPC(Tally.self) { tallier, tally, context in
            tallier.counts[tally.item, default: 0] += 1
            context.stateChanged()
            return Tallies(counts: tallier.counts)
        }
        registry.on(Tally.self) { tallier, tally, context in
            tallier.counts[tally.item, default: 0] += 1
            context.stateChanged()
        }
        registry.onRPC(GetTallies.self) { tallier, _, _ in Tallies(counts: tallier.counts) }
        // Changes the state, says so, and the snapshot of that change fails.
        registry.onRPC(Refuse.self) { tallier, _, context -> Tallies in
            tallier.counts["refused", default: 0] += 1
            tallier.failNextSnapshot = true
            context.stateChanged()
            return Tallies(counts: tallier.counts)
        }
    }
}

/// Calls `stateChanged()` though it keeps no state.
final class Forgetful: Agent {
    static let type = "forgetful"

    init(context: AgentContext) {}

    static func handlers(_ registry: inout HandlerRegistry<Forgetful>) {
        registry.onRPC(Echo.self) { _, echo, context in
            context.stateChanged()
            return echo
        }
    }
}
