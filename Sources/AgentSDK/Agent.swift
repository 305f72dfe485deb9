/// An agent type a Swift plugin offers: a class whose instances handle messages.
///
/// The runtime creates one instance per agent id (`type/key`), lazily, on the id's first
/// message, and delivers that instance's messages one at a time, in arrival order: a handler
/// may change the instance's properties without locks, because no other handler of the same
/// instance runs until it has returned (even across its `await`s).
///
/// A handler starts on the runtime's thread that delivered the message and runs there until
/// its first suspension (an `await` that waits), then continues on Swift's global executor; a
/// handler that never waits costs no thread hop. Like a C handler, it must not block that
/// thread: move long computations off it (for example into a `Task.detached` you await).
///
/// ```swift
/// struct Greeting: AgentMessage { var name: String }
/// struct GreetingReply: AgentMessage { var text: String }
///
/// final class Greeter: Agent {
///     static let type = "greeter"
///     static let subscriptions: [Subscription] = [.topicType("greetings")]
///
///     let greeting: String
///     var greeted = 0
///
///     init(context: AgentContext) {
///         greeting = context.setting("greeting") ?? "Hello"
///     }
///
///     static func handlers(_ registry: inout HandlerRegistry<Greeter>) {
///         // An event published to "greetings": answer on "greeting-replies".
///         registry.on(Greeting.self) { agent, message, context in
///             agent.greeted += 1
///             let reply = GreetingReply(text: "\(agent.greeting), \(message.name)!")
///             try context.publish(reply, to: TopicID(type: "greeting-replies", source: context.agentID.key))
///         }
///         // An RPC: the returned message is the answer.
///         registry.onRPC(Greeting.self) { agent, message, context in
///             GreetingReply(text: "\(agent.greeting), \(message.name)!")
///         }
///     }
/// }
/// ```
///
/// Then list the type in the plugin's ``Plugin``.
///
/// An agent type is `SendableMetatype`: its conformance may not be isolated to an actor, since
/// the runtime calls it from its own threads.
public protocol Agent: AnyObject, SendableMetatype {
    /// The agent type name, unique across every plugin the runtime loads. AutoGen's rule:
    /// letters, digits, `_`, `-` and `.`.
    static var type: String { get }

    /// A one-line description for logs and `agentd plugin check`. Defaults to none.
    static var typeDescription: String? { get }

    /// The topics this type receives events from. Defaults to none (RPCs only).
    static var subscriptions: [Subscription] { get }

    /// Whether several runtimes may serve this type at once, each the keys the host places on
    /// it (`AGENTD_AGENT_TYPE_SHARED`). Give a shared type state (``StatefulAgent``) and its
    /// runtimes one state store: a key's state follows it when it moves. Defaults to false (one
    /// runtime serves the type, AutoGen's rule). `[plugin.NAME] shared = true | false` in the
    /// runtime's INI file overrides it.
    static var shared: Bool { get }

    /// Creates the instance for ``AgentContext/agentID``, on its first message.
    ///
    /// Read settings here, and keep the context if the agent publishes or sends outside a
    /// handler. Throwing fails the message that caused the creation (and is logged).
    init(context: AgentContext) throws

    /// Registers the type's message handlers; called once, when the plugin loads.
    ///
    /// - Parameter registry: Takes ``HandlerRegistry/on(_:_:)`` for events and
    ///   ``HandlerRegistry/onRPC(_:_:)`` for RPCs, one of each at most per message type.
    static func handlers(_ registry: inout HandlerRegistry<Self>)
}

extension Agent {
    public static var typeDescription: String? { nil }

    public static var subscriptions: [Subscription] { [] }

    public static var shared: Bool { false }
}
