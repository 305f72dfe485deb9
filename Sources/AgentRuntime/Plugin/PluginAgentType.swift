import AgentCore
import AgentPluginABI
import Synchronization

/// An agent type as a plugin's descriptor declares it: its name, subscriptions and handler
/// table keyed by message type.
final class AgentTypeDeclaration: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; `handlers`, `fallback` and `descriptor` are C
    // pointers into the plugin's descriptor, which the header requires to stay valid and
    // unchanged until the plugin is unloaded.
    let name: String
    let subscriptions: [Subscription.Kind]
    /// Message type → handler.
    let handlers: [String: agentd_handler_fn]
    /// The `*` handler, for message types without their own.
    let fallback: agentd_handler_fn?
    let descriptor: UnsafePointer<agentd_agent_type>
    /// An agent of this type has called `state_changed`: from then on only the messages that
    /// call it are checkpointed.
    let reportsStateChanges = Atomic<Bool>(false)
    /// The type offers both snapshot and restore.
    let offersState: Bool
    /// Several runtimes may serve it, each the keys placed on it (``AGENTD_AGENT_TYPE_SHARED``).
    let shared: Bool

    init(name: String, subscriptions: [Subscription.Kind], handlers: [String: agentd_handler_fn],
         fallback: agentd_handler_fn?, descriptor: UnsafePointer<agentd_agent_type>, shared: Bool = false) {
        self.shared = shared
        self.name = name
        self.subscriptions = subscriptions
        self.handlers = handlers
        self.fallback = fallback
        self.descriptor = descriptor
        offersState = descriptor.pointee.snapshot != nil && descriptor.pointee.restore != nil
    }
}

/// One agent type as one loaded version of a plugin serves it.
///
/// A reload serves the same type name from another ``LoadedPlugin``: two values are the same
/// version only if they come from the same declaration (``isSameVersion(as:)``).
public struct PluginAgentType: Sendable {
    /// The plugin version serving the type (kept alive by every agent running on it).
    public let plugin: LoadedPlugin
    let declaration: AgentTypeDeclaration

    public var name: String { declaration.name }
    public var subscriptions: [Subscription.Kind] { declaration.subscriptions }
    /// The message types it has handlers for (`*` last, when it has a fallback).
    public var messageTypes: [String] {
        declaration.handlers.keys.sorted() + (declaration.fallback == nil ? [] : ["*"])
    }
    var descriptor: UnsafePointer<agentd_agent_type> { declaration.descriptor }

    /// The handler for `messageType`, or the fallback.
    @inline(__always)
    func handler(for messageType: String) -> agentd_handler_fn? {
        declaration.handlers[messageType] ?? declaration.fallback
    }

    /// Whether several runtimes may serve it (each the keys the host places on it).
    public var isShared: Bool { declaration.shared }

    /// Whether its agents have state to keep: the type offers both snapshot and restore.
    var offersState: Bool { declaration.offersState }

    /// Whether `other` is this very version of the type.
    func isSameVersion(as other: PluginAgentType?) -> Bool {
        declaration === other?.declaration
    }
}
