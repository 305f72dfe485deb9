import AgentPluginABI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// One Swift agent type as the runtime sees it: its name, handlers and factory, erased.
///
/// The descriptor's `agentd_agent_type.context` holds a retained reference to it: the single
/// C `create` thunk every type shares finds its Swift type through `type->context`, and each
/// instance keeps a reference to it for dispatch.
final class AgentTypeBinding: Sendable {
    let name: String
    let typeDescription: String?
    let subscriptions: [Subscription]
    /// ``Agent/shared``.
    let shared: Bool
    /// Handlers by message type name.
    let handlers: [String: MessageHandlers]
    let host: HostFunctions
    let start: HandlerStart
    private let makeAgent: @Sendable (AgentContext) throws -> AnyObject
    /// Present when the type conforms to ``StatefulAgent``.
    let state: StateHooks?

    private init(
        name: String, typeDescription: String?, subscriptions: [Subscription], shared: Bool,
        handlers: [String: MessageHandlers], host: HostFunctions, start: HandlerStart,
        makeAgent: @escaping @Sendable (AgentContext) throws -> AnyObject, state: StateHooks?
    ) {
        self.name = name
        self.typeDescription = typeDescription
        self.subscriptions = subscriptions
        self.shared = shared
        self.handlers = handlers
        self.host = host
        self.start = start
        self.makeAgent = makeAgent
        self.state = state
    }

    /// Collects `A`'s handlers; returns the binding and the mistakes found while registering.
    static func make<A: Agent>(_ type: A.Type, host: HostFunctions, start: HandlerStart)
        -> (binding: AgentTypeBinding, problems: [String])
    {
        var registry = HandlerRegistry<A>()
        A.handlers(&registry)
        let state = (A.self as? any StatefulAgent.Type).map { StateHooks.make($0) }
        let binding = AgentTypeBinding(
            name: A.type, typeDescription: A.typeDescription, subscriptions: A.subscriptions, shared: A.shared,
            handlers: registry.entries, host: host, start: start,
            makeAgent: { context in try A(context: context) }, state: state)
        return (binding, registry.problems)
    }

    /// The `create` of every Swift agent type.
    static func create(
        _ plugin: OpaquePointer?, _ type: UnsafePointer<agentd_agent_type>?, _ agent: OpaquePointer?,
        _ key: agentd_str, _ instance: UnsafeMutablePointer<UnsafeMutableRawPointer?>?
    ) -> agentd_status {
        guard let context = type?.pointee.context, let instance else { return AGENTD_MISUSE }
        let binding = Unmanaged<AgentTypeBinding>.fromOpaque(context).takeUnretainedValue()
        return binding.create(agent: AgentReference(pointer: agent), key: String(key), into: instance)
    }

    private func create(agent: AgentReference, key: String, into instance: UnsafeMutablePointer<UnsafeMutableRawPointer?>)
        -> agentd_status
    {
        let context = AgentContext(agentID: AgentID(type: name, key: key), host: host, agent: agent)
        do {
            let made = try makeAgent(context)
            instance.pointee = Unmanaged.passRetained(AgentInstance(agent: made, binding: self, context: context))
                .toOpaque()
            return AGENTD_OK
        } catch {
            host.log(agent: agent.pointer, level: .error, "creating agent \(context.agentID) failed: \(error)")
            return AGENTD_FAILED
        }
    }
}

/// How a handler's task starts. (SPI for Benchmarks/SDKBench, which compares the two.)
@_spi(Benchmarks) public enum HandlerStart: Sendable {
    /// `Task.immediate`: the handler runs on the runtime's thread until its first suspension,
    /// so a handler that never waits costs no thread hop (the default).
    case immediate
    /// A plain `Task`: the runtime's thread returns at once and the handler runs on Swift's
    /// global executor.
    case enqueued
}

/// Snapshot and restore of a ``StatefulAgent``, erased: its `State` as JSON.
struct StateHooks: Sendable {
    let snapshot: @Sendable (AnyObject) throws -> Data
    let restore: @Sendable (AnyObject, Data) throws -> Void

    static func make<S: StatefulAgent>(_ type: S.Type) -> StateHooks {
        StateHooks(
            snapshot: { agent in
                // Sorted keys: a dictionary's order changes from one encoding to the next, and
                // the runtime compares a snapshot's bytes with the stored ones to skip writes.
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                return try encoder.encode(unsafeDowncast(agent, to: S.self).snapshot())
            },
            restore: { agent, data in
                // Lenient on purpose: a new version may have dropped properties.
                try unsafeDowncast(agent, to: S.self).restore(JSONDecoder().decode(S.State.self, from: data))
            })
    }
}
