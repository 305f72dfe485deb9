// GreeterAgent: the example Swift plugin.
//
// Agent type `greeter`, subscribed to topic type `greetings`. An event `Greeting {"name": N}`
// published to (greetings, S) makes it publish `GreetingReply {"text": "Hello, N!"}` to
// (greeting-replies, S). An RPC `Greeting` is answered with the same `GreetingReply`. The word
// comes from the `greeting` setting of the runtime's INI file, "Hello" without it:
//
//     [plugin.greeter-plugin]
//     greeting = Bonjour
//
// The Python side of the same conversation:
//
//     @dataclass
//     class Greeting:
//         name: str
//
//     @dataclass
//     class GreetingReply:
//         text: str

import AgentSDK

/// Asks the greeter to greet someone (an event on `greetings`, or an RPC).
struct Greeting: AgentMessage {
    var name: String
}

/// The greeter's answer: `"Hello, Ada!"`.
struct GreetingReply: AgentMessage {
    var text: String
}

/// Greets whoever a ``Greeting`` names.
final class Greeter: Agent {
    static let type = "greeter"
    static let typeDescription: String? = "Answers a Greeting with a GreetingReply (event or RPC)."
    static let subscriptions: [Subscription] = [.topicType("greetings")]

    /// The topic type replies to events go to (with the incoming topic's source).
    static let replyTopicType = "greeting-replies"

    /// "Hello", or the plugin's `greeting` setting.
    let greeting: String

    init(context: AgentContext) {
        greeting = context.setting("greeting") ?? "Hello"
    }

    func reply(to message: Greeting) -> GreetingReply {
        GreetingReply(text: "\(greeting), \(message.name)!")
    }

    static func handlers(_ registry: inout HandlerRegistry<Greeter>) {
        registry.on(Greeting.self) { greeter, greeting, context in
            let source = context.topic?.source ?? context.agentID.key
            try context.publish(greeter.reply(to: greeting), to: TopicID(type: replyTopicType, source: source))
        }
        registry.onRPC(Greeting.self) { greeter, greeting, _ in
            greeter.reply(to: greeting)
        }
    }
}

/// The entry the runtime calls when it loads the plugin.
@_cdecl("agentd_plugin_entry")
public func agentdPluginEntry(_ host: HostAPI, _ plugin: PluginHandle) -> PluginDescriptor {
    Plugin(name: "greeter-plugin", version: "1.0.0", agents: [Greeter.self]).export(host, plugin)
}
