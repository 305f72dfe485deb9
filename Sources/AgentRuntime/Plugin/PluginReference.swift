import Logging
import Synchronization

/// What an `agentd_plugin_ref *` names: a plugin file being loaded — its entry may already call
/// `log` and `setting` with it — and, once its descriptor is validated, the loaded plugin.
final class PluginReference: Sendable {
    /// The file it was loaded from.
    let path: String
    /// Where its `log` calls go.
    let logger: Logger
    /// Where its `plugin_publish` and `plugin_send` calls go (nil where plugins are only
    /// checked, as in `agentd plugin check`: those calls answer AGENTD_UNAVAILABLE).
    let context: DispatchContext?
    private let handleBits: UInt
    private let loaded = Mutex<LoadedPlugin?>(nil)

    init(handle: OpaquePointer, path: String, logger: Logger, context: DispatchContext?) {
        handleBits = UInt(bitPattern: Int(bitPattern: handle))
        self.path = path
        self.logger = logger
        self.context = context
    }

    /// The handle the plugin receives.
    var handle: OpaquePointer { OpaquePointer(bitPattern: handleBits)! }

    /// The plugin, once validated (nil while its entry runs, and after it is unloaded).
    var plugin: LoadedPlugin? { loaded.withLock { $0 } }

    func resolve(to plugin: LoadedPlugin?) { loaded.withLock { $0 = plugin } }
}
