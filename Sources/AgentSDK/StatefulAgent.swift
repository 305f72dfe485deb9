/// An agent whose state survives a hot reload of its plugin.
///
/// When the runtime replaces a plugin with a new version, it asks every live instance of the
/// old version for a ``snapshot()`` (between two messages, never during a handler), and hands
/// it to the new version's instance of the same agent id, through ``restore(_:)``, right after
/// that instance was created. The state travels as JSON, so the new version may add optional
/// properties to `State` or drop some: unknown keys are ignored when restoring.
///
/// ```swift
/// final class Counter: StatefulAgent {
///     struct State: Codable { var count: Int }
///     static let type = "counter"
///     var count = 0
///
///     init(context: AgentContext) {}
///     func snapshot() -> State { State(count: count) }
///     func restore(_ state: State) { count = state.count }
///     static func handlers(_ registry: inout HandlerRegistry<Counter>) { … }
/// }
/// ```
public protocol StatefulAgent: Agent {
    /// What moves from one version of the plugin to the next.
    associatedtype State: Codable, SendableMetatype

    /// The instance's state now. Throwing makes the runtime start the new instance afresh.
    func snapshot() throws -> State

    /// Takes over state a previous version's ``snapshot()`` returned.
    func restore(_ state: State) throws
}
