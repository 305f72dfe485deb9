import AgentCore
import AgentPluginABI
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A plugin loaded into the process: its library handle, descriptor and agent types.
///
/// Its address is the `agentd_plugin_ref *` the plugin receives; it stays valid (the object
/// is kept alive) as long as the library is loaded.
public final class LoadedPlugin: @unchecked Sendable, CustomStringConvertible {
    // @unchecked Sendable: every stored property is immutable after the loader finishes
    // validating the plugin (before the object is shared); `settingStorage` holds C strings
    // that are written once in init and only read afterwards.

    /// The plugin's own name (from its descriptor).
    public let name: String
    public let version: String
    /// The file it was loaded from (not the shadow copy).
    public let path: String
    /// A hash of the file's content, for logs and to notice unchanged rewrites.
    public let contentHash: String
    /// Whether the library links the Swift runtime (and so may never be unloaded).
    public let isSwift: Bool
    public let agentTypes: [PluginAgentType]

    let handle: UnsafeMutableRawPointer
    /// Where the library is mapped (to find the plugin a code address belongs to).
    let imageBase: UnsafeRawPointer?
    let descriptor: UnsafePointer<agentd_plugin>
    let shadowPath: String
    /// The plugin's settings ([plugin.NAME]) as C strings, borrowed by `setting` callers
    /// until unload.
    private let settingStorage: [String: UnsafeMutableBufferPointer<CChar>]
    /// Agent instances its create() made that are not destroyed yet.
    private let liveInstances = Atomic<Int>(0)
    /// Handlers running in it, calls it has not answered, and its send() completions not
    /// yet called: while any is left, its code may still run.
    private let activity = Atomic<Int>(0)

    func instanceDidStart() { liveInstances.add(1, ordering: .relaxed) }
    func instanceDidEnd() { liveInstances.subtract(1, ordering: .sequentiallyConsistent) }
    func activityDidStart() { activity.add(1, ordering: .relaxed) }
    func activityDidEnd() { activity.subtract(1, ordering: .sequentiallyConsistent) }

    /// Nothing of the plugin runs or is held any more: it may be unloaded.
    var isIdle: Bool {
        liveInstances.load(ordering: .sequentiallyConsistent) == 0 && activity.load(ordering: .sequentiallyConsistent) == 0
    }

    init(name: String, version: String, path: String, contentHash: String, isSwift: Bool,
         agentTypes: [PluginAgentType], handle: UnsafeMutableRawPointer, imageBase: UnsafeRawPointer?,
         descriptor: UnsafePointer<agentd_plugin>, shadowPath: String, settings: [String: String]) {
        self.name = name
        self.version = version
        self.path = path
        self.contentHash = contentHash
        self.isSwift = isSwift
        self.agentTypes = agentTypes
        self.handle = handle
        self.imageBase = imageBase
        self.descriptor = descriptor
        self.shadowPath = shadowPath
        var storage: [String: UnsafeMutableBufferPointer<CChar>] = [:]
        for (key, value) in settings {
            let utf8 = Array(value.utf8CString)
            let buffer = UnsafeMutableBufferPointer<CChar>.allocate(capacity: utf8.count)
            _ = buffer.initialize(from: utf8)
            storage[key] = buffer
        }
        settingStorage = storage
    }

    deinit {
        for buffer in settingStorage.values { buffer.deallocate() }
    }

    /// A setting's value as a borrowed C view (valid until unload).
    func setting(_ key: String) -> agentd_str? {
        guard let buffer = settingStorage[key] else { return nil }
        return agentd_str(data: UnsafePointer(buffer.baseAddress), length: buffer.count - 1)
    }

    public var description: String { "\(name) \(version) (\(path), \(contentHash))" }
}

/// One agent type a plugin offers, with its handler table keyed by message type.
public final class PluginAgentType: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; the C pointers point into the plugin's
    // descriptor, which the header requires to stay valid and unchanged until unload.
    public let name: String
    public let subscriptions: [Subscription.Kind]
    /// Message type → handler.
    let handlers: [String: agentd_handler_fn]
    /// The `*` handler, for message types without their own.
    let fallback: agentd_handler_fn?
    let descriptor: UnsafePointer<agentd_agent_type>
    unowned(unsafe) var plugin: LoadedPlugin!

    init(name: String, subscriptions: [Subscription.Kind], handlers: [String: agentd_handler_fn],
         fallback: agentd_handler_fn?, descriptor: UnsafePointer<agentd_agent_type>) {
        self.name = name
        self.subscriptions = subscriptions
        self.handlers = handlers
        self.fallback = fallback
        self.descriptor = descriptor
    }

    /// The handler for `messageType`, or the fallback.
    @inline(__always)
    func handler(for messageType: String) -> agentd_handler_fn? {
        handlers[messageType] ?? fallback
    }

    public var messageTypes: [String] { handlers.keys.sorted() + (fallback == nil ? [] : ["*"]) }
}
