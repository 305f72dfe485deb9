import AgentCore
import AgentPluginABI

/// A plugin's descriptor, checked against the header's rules before anything uses it: sizes,
/// the ABI major version, names, subscriptions and handler tables.
struct PluginDescriptor {
    let name: String
    let version: String
    let agentTypes: [AgentTypeDeclaration]

    /// Validates `descriptor`, as returned by the entry of the plugin at `path`.
    /// - Parameter takenAgentTypes: agent types other loaded plugins serve (refused here).
    /// - Throws: ``PluginLoadError`` naming the file, the agent type and the rule broken.
    /// - Parameter settings: each plugin name's `[plugin.NAME]` settings (`shared = true|false`
    ///   overrides the types' ``AGENTD_AGENT_TYPE_SHARED`` flag).
    init(validating descriptor: UnsafePointer<agentd_plugin>, path: String, takenAgentTypes: Set<String>,
         settings: [String: [String: String]] = [:])
        throws(PluginLoadError)
    {
        func refuse(_ code: PluginLoadError.Code, _ reason: String) -> PluginLoadError {
            PluginLoadError(code: code, path: path, reason: reason)
        }
        let plugin = descriptor.pointee
        guard plugin.size >= UInt32(MemoryLayout<agentd_plugin>.size) else {
            throw refuse(.invalidDescriptor, "agentd_plugin.size is \(plugin.size), smaller than ABI 1.0's \(MemoryLayout<agentd_plugin>.size)")
        }
        guard plugin.abi_major == AGENTD_ABI_MAJOR else {
            throw refuse(.abiMismatch, "built for plugin ABI \(plugin.abi_major).\(plugin.abi_minor); this runtime speaks ABI \(AGENTD_ABI_MAJOR).x (rebuild it against this agent_plugin.h)")
        }
        guard let namePointer = plugin.name, case let name = String(cString: namePointer), !name.isEmpty else {
            throw refuse(.invalidDescriptor, "the plugin has no name")
        }
        guard plugin.agent_type_count == 0 || plugin.agent_types != nil else {
            throw refuse(.invalidDescriptor, "plugin \(name): agent_type_count is \(plugin.agent_type_count) but agent_types is NULL")
        }
        guard plugin.agent_type_count <= 10_000 else {
            throw refuse(.invalidDescriptor, "plugin \(name): agent_type_count \(plugin.agent_type_count) is not believable")
        }
        let sharedOverride: Bool?
        switch settings[name]?["shared"]?.lowercased() {
        case nil: sharedOverride = nil
        case "true", "yes", "1": sharedOverride = true
        case "false", "no", "0": sharedOverride = false
        case let other?:
            throw refuse(.invalidDescriptor, "plugin \(name): [plugin.\(name)] shared = \(other) is not true or false")
        }
        var types: [AgentTypeDeclaration] = []
        var seen = Set<String>()
        for index in 0..<plugin.agent_type_count {
            let typePointer = plugin.agent_types! + index
            let type = typePointer.pointee
            guard type.size >= UInt32(Self.agentTypeSize10) else {
                throw refuse(.invalidDescriptor, "plugin \(name): agent type #\(index) has size \(type.size), smaller than ABI 1.0's \(Self.agentTypeSize10)")
            }
            guard let typeNamePointer = type.name, case let typeName = String(cString: typeNamePointer),
                  AgentID.isValidType(typeName) else {
                throw refuse(.invalidDescriptor, "plugin \(name): agent type #\(index) has no valid name (letters, digits, '_', '-', '.')")
            }
            guard typeName.utf8.count <= FieldLimits.agentType else {
                throw refuse(.invalidDescriptor, "plugin \(name): agent type #\(index)'s name is \(typeName.utf8.count) bytes long; the most a host takes is \(FieldLimits.agentType)")
            }
            guard seen.insert(typeName).inserted else {
                throw refuse(.duplicateAgentType, "plugin \(name) declares agent type '\(typeName)' twice")
            }
            guard !takenAgentTypes.contains(typeName) else {
                throw refuse(.duplicateAgentType, "plugin \(name): agent type '\(typeName)' is already served by another loaded plugin")
            }
            let subscriptions = try Self.subscriptions(of: type, typeName: typeName, refuse: refuse)
            let (handlers, fallback) = try Self.handlers(of: type, typeName: typeName, refuse: refuse)
            types.append(AgentTypeDeclaration(
                name: typeName, subscriptions: subscriptions, handlers: handlers, fallback: fallback,
                descriptor: typePointer, shared: sharedOverride ?? Self.flags(of: typePointer).contains(.shared)))
        }
        self.name = name
        self.version = plugin.version.map { String(cString: $0) } ?? ""
        self.agentTypes = types
    }

    private static func subscriptions(
        of type: agentd_agent_type, typeName: String, refuse: (PluginLoadError.Code, String) -> PluginLoadError
    ) throws(PluginLoadError) -> [Subscription.Kind] {
        guard type.subscription_count > 0 else { return [] }
        guard let list = type.subscriptions else {
            throw refuse(.invalidDescriptor, "agent type '\(typeName)': subscription_count is \(type.subscription_count) but subscriptions is NULL")
        }
        var subscriptions: [Subscription.Kind] = []
        for s in 0..<type.subscription_count {
            let sub = list[s]
            guard sub.size >= UInt32(MemoryLayout<agentd_subscription>.size), let topicPointer = sub.topic else {
                throw refuse(.invalidDescriptor, "agent type '\(typeName)': subscription #\(s) has a bad size or no topic")
            }
            let topic = String(cString: topicPointer)
            switch sub.kind {
            case AGENTD_SUBSCRIBE_TOPIC_TYPE:
                guard TopicID.isValidType(topic) else {
                    throw refuse(.invalidDescriptor, "agent type '\(typeName)': subscription #\(s) has an invalid topic type '\(topic)'")
                }
                subscriptions.append(.topicType(topic))
            case AGENTD_SUBSCRIBE_TOPIC_PREFIX:
                guard topic.isEmpty || TopicID.isValidType(topic) else {
                    throw refuse(.invalidDescriptor, "agent type '\(typeName)': subscription #\(s) has an invalid topic prefix '\(topic)'")
                }
                subscriptions.append(.topicTypePrefix(topic))
            default:
                throw refuse(.invalidDescriptor, "agent type '\(typeName)': subscription #\(s) has unknown kind \(sub.kind.rawValue)")
            }
        }
        return subscriptions
    }

    private static func handlers(
        of type: agentd_agent_type, typeName: String, refuse: (PluginLoadError.Code, String) -> PluginLoadError
    ) throws(PluginLoadError) -> (handlers: [String: agentd_handler_fn], fallback: agentd_handler_fn?) {
        guard type.handler_count > 0 else { return ([:], nil) }
        guard let list = type.handlers else {
            throw refuse(.invalidDescriptor, "agent type '\(typeName)': handler_count is \(type.handler_count) but handlers is NULL")
        }
        var handlers: [String: agentd_handler_fn] = [:]
        var fallback: agentd_handler_fn?
        for h in 0..<type.handler_count {
            let entry = list[h]
            guard entry.size >= UInt32(MemoryLayout<agentd_handler>.size), let messagePointer = entry.message_type,
                  let function = entry.handle else {
                throw refuse(.invalidDescriptor, "agent type '\(typeName)': handler #\(h) has a bad size, no message type or no function")
            }
            let messageType = String(cString: messagePointer)
            guard !messageType.isEmpty else {
                throw refuse(.invalidDescriptor, "agent type '\(typeName)': handler #\(h) has an empty message type")
            }
            if messageType == "*" {
                fallback = function
            } else {
                guard handlers[messageType] == nil else {
                    throw refuse(.invalidDescriptor, "agent type '\(typeName)': two handlers for message type '\(messageType)'")
                }
                handlers[messageType] = function
            }
        }
        return (handlers, fallback)
    }

    /// `agentd_agent_type`'s size in ABI 1.0 to 1.2 (before `flags`).
    static let agentTypeSize10 = MemoryLayout<agentd_agent_type>.offset(of: \agentd_agent_type.flags)!

    /// The type's ``AgentTypeFlags``, if its `size` covers them (ABI 1.3).
    static func flags(of type: UnsafePointer<agentd_agent_type>) -> AgentTypeFlags {
        guard Int(type.pointee.size) >= agentTypeSize10 + MemoryLayout<UInt32>.size else { return [] }
        return AgentTypeFlags(rawValue: type.pointee.flags)
    }
}

/// `agentd_agent_type.flags`.
struct AgentTypeFlags: OptionSet, Sendable {
    let rawValue: UInt32
    static let shared = AgentTypeFlags(rawValue: AGENTD_AGENT_TYPE_SHARED)
}
