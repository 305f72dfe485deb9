import AgentPluginABI
import Synchronization

/// Lays out the C descriptor (`agentd_plugin` and everything it points to) on the heap.
///
/// None of it is ever freed: the ABI requires it to stay valid until the plugin is unloaded,
/// and a Swift plugin is never unmapped (the Swift runtime keeps pointers into every image it
/// has seen), so its lifetime is the process's. It is a few hundred bytes per load.
///
/// Every Swift agent type shares the same C functions: `create` finds the Swift type through
/// `type->context` (a retained ``AgentTypeBinding``), and the handler, destroy, snapshot and
/// restore functions find it through the instance.
enum PluginDescriptorLayout {
    /// Every descriptor made in this image, kept reachable on purpose (so that leak checkers
    /// see owned memory, not a leak).
    private static let made = Mutex<[DescriptorAddress]>([])

    private struct DescriptorAddress: @unchecked Sendable {
        // @unchecked: the descriptor is immutable once made.
        let pointer: UnsafePointer<agentd_plugin>
    }

    static func make(name: String, version: String, agentTypes: [AgentTypeBinding]) -> UnsafePointer<agentd_plugin> {
        let types = agentTypes.isEmpty ? nil : UnsafeMutablePointer<agentd_agent_type>.allocate(capacity: agentTypes.count)
        for (index, binding) in agentTypes.enumerated() {
            types!.advanced(by: index).initialize(to: agentType(binding))
        }
        var plugin = agentd_plugin()
        plugin.size = UInt32(MemoryLayout<agentd_plugin>.size)
        plugin.abi_major = UInt16(AGENTD_ABI_MAJOR)
        plugin.abi_minor = UInt16(AGENTD_ABI_MINOR)
        plugin.name = name.permanentCString()
        plugin.version = version.permanentCString()
        plugin.agent_types = UnsafePointer(types)
        plugin.agent_type_count = agentTypes.count
        plugin.unload = nil
        let descriptor = UnsafeMutablePointer<agentd_plugin>.allocate(capacity: 1)
        descriptor.initialize(to: plugin)
        made.withLock { $0.append(DescriptorAddress(pointer: descriptor)) }
        return UnsafePointer(descriptor)
    }

    private static func agentType(_ binding: AgentTypeBinding) -> agentd_agent_type {
        var type = agentd_agent_type()
        type.size = UInt32(MemoryLayout<agentd_agent_type>.size)
        type.name = binding.name.permanentCString()
        type.description = binding.typeDescription?.permanentCString()
        // A runtime older than ABI 1.3 reads only the fields its own size covers: not flags.
        type.flags = binding.shared ? AGENTD_AGENT_TYPE_SHARED : 0

        let subscriptions = binding.subscriptions
        if !subscriptions.isEmpty {
            let table = UnsafeMutablePointer<agentd_subscription>.allocate(capacity: subscriptions.count)
            for (index, subscription) in subscriptions.enumerated() {
                var entry = agentd_subscription()
                entry.size = UInt32(MemoryLayout<agentd_subscription>.size)
                switch subscription {
                case .topicType: entry.kind = AGENTD_SUBSCRIBE_TOPIC_TYPE
                case .topicPrefix: entry.kind = AGENTD_SUBSCRIBE_TOPIC_PREFIX
                }
                entry.topic = subscription.topic.permanentCString()
                table.advanced(by: index).initialize(to: entry)
            }
            type.subscriptions = UnsafePointer(table)
        }
        type.subscription_count = subscriptions.count

        let messageTypes = binding.handlers.keys.sorted()
        if !messageTypes.isEmpty {
            let table = UnsafeMutablePointer<agentd_handler>.allocate(capacity: messageTypes.count)
            for (index, messageType) in messageTypes.enumerated() {
                var entry = agentd_handler()
                entry.size = UInt32(MemoryLayout<agentd_handler>.size)
                entry.message_type = messageType.permanentCString()
                entry.handle = { instance, message in AgentInstance.handle(instance, message) }
                table.advanced(by: index).initialize(to: entry)
            }
            type.handlers = UnsafePointer(table)
        }
        type.handler_count = messageTypes.count

        type.create = { plugin, type, agent, key, instance in
            AgentTypeBinding.create(plugin, type, agent, key, instance)
        }
        type.destroy = { instance in AgentInstance.destroy(instance) }
        if binding.state != nil {
            type.snapshot = { instance, write, sink in AgentInstance.snapshot(instance, write, sink) }
            type.restore = { instance, state in AgentInstance.restore(instance, state) }
        }
        type.context = UnsafeRawPointer(Unmanaged.passRetained(binding).toOpaque())
        return type
    }
}
