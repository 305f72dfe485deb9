/// An agent whose state outlives its instance: across restarts of the runtime, the
/// retirement of idle agents, and hot reloads of its plugin.
///
/// The runtime keeps each agent's ``snapshot()`` in its state store (`[state] store = sqlite`,
/// the default). When a message comes for an agent that is not resident — the first message
/// after the runtime started, or after the agent was retired for being idle (`[agents]
/// idle_seconds`) or least recently used (`[agents] max_resident`) — the runtime creates the
/// instance and hands it its stored state through ``restore(_:)`` before the first handler
/// runs. After a message that changed the state, it takes a snapshot and writes it to the store
/// (a *checkpoint*). Snapshots are taken between two messages, never while a handler runs, so
/// they never see a half-done change.
///
/// ```swift
/// struct Add: AgentMessage { var amount: Int }
/// struct Get: AgentMessage {}
/// struct Count: AgentMessage { var count: Int }
///
/// final class Counter: StatefulAgent {
///     struct State: Codable { var count: Int }
///     static let type = "counter"
///     var count = 0
///
///     init(context: AgentContext) {}
///     func snapshot() -> State { State(count: count) }
///     func restore(_ state: State) { count = state.count }
///
///     static func handlers(_ registry: inout HandlerRegistry<Counter>) {
///         registry.onRPC(Add.self) { counter, add, context in
///             counter.count += add.amount
///             context.stateChanged()           // checkpoint this message
///             return Count(count: counter.count)
///         }
///         registry.onRPC(Get.self) { counter, _, _ in
///             Count(count: counter.count)      // reads only
///         }
///     }
/// }
/// ```
///
/// ## What a checkpoint guarantees
///
/// - **An answered RPC's change is stored.** The runtime holds an RPC's answer until the
///   checkpoint of its message is committed. A caller that got the answer can count on the
///   change surviving the runtime being killed (`[state] sync = normal`, the default) or the
///   machine losing power (`sync = full`). A message whose answer never arrived may or may not
///   have been kept.
/// - **A failed checkpoint is no silent loss.** If ``snapshot()`` throws or the store cannot
///   write, the caller gets an error instead of the answer, and the instance is dropped: the
///   next message starts from the state last stored.
/// - **An event's change is stored too**, with nobody waiting for the commit. While more
///   messages wait for the same agent, an event's checkpoint may be left to theirs (up to 64
///   events share one): the agent's last message before it goes idle, and every RPC, are
///   checkpointed, but a change made by an event can be lost if the runtime is killed while
///   that agent still has messages queued.
///
/// Say which messages change the state with ``MessageContext/stateChanged()``. A type that
/// never calls it is snapshotted after every message, and the snapshot is written when it
/// differs from the last one stored: correct, but it costs a snapshot per message. Once a type
/// has called it, only the messages that call it are checkpointed.
///
/// ## The stored form
///
/// `State` travels and is stored as JSON, its keys sorted (so equal states give equal bytes),
/// which is what `agentd state save` shows. The same JSON carries the state to a new version
/// of the plugin on a hot reload, so a new version may add optional properties to `State` or
/// drop some: unknown keys are ignored when restoring. A stored state that no longer decodes is
/// refused: the agent does not start, its messages are answered with an error, and the stored
/// state is kept until it is replaced (`agentd state load`) or deleted (`agentd state delete`).
public protocol StatefulAgent: Agent {
    /// What is kept between activations and carried from one version of the plugin to the
    /// next, as JSON.
    associatedtype State: Codable, SendableMetatype

    /// The instance's state now, called between two messages.
    ///
    /// Throwing fails the checkpoint: the message's RPC is answered with an error and the
    /// instance restarts from the stored state. On a hot reload, the new version's instance
    /// then starts from the stored state as well (or afresh, without a store).
    func snapshot() throws -> State

    /// Takes over a state that ``snapshot()`` returned — from the store when the agent is
    /// activated, or from the previous version on a hot reload — right after ``Agent/init(context:)``
    /// and before any handler.
    ///
    /// Throwing refuses the state (an ``AgentError``'s code is the status the runtime sees;
    /// any other error is ``AgentError/Code/failed``, a `State` that does not decode
    /// ``AgentError/Code/invalidArgument``): the agent does not start and its messages are
    /// answered with an error. A hot reload whose new version refuses a live agent's state is
    /// refused.
    func restore(_ state: State) throws
}
