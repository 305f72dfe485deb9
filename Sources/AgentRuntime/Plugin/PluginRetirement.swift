import Logging
import Synchronization

/// Replaced and removed plugin versions, unloaded once nothing runs in them or holds them any
/// more: no handler running, no call unanswered, no `send` completion uncalled, no agent
/// instance alive.
///
/// Whatever ends a plugin's activity reports it here (``activityDidEnd(_:)``,
/// ``instanceDidEnd(_:)``), so that the last one out unloads the version.
final class PluginRetirement: Sendable {
    private let loader: PluginLoader
    private let logger: Logger
    private let retiring = Mutex<[LoadedPlugin]>([])
    /// Whether `retiring` has anything (read on the per-message path without the lock).
    /// Sequentially consistent, like the plugins' activity counts: a thread ending the last
    /// activity either sees it set, or `retire` sees the plugin idle.
    private let hasRetiring = Atomic<Bool>(false)

    init(loader: PluginLoader, logger: Logger) {
        self.loader = loader
        self.logger = logger
    }

    /// Marks a plugin version as replaced or removed: it is unloaded once idle.
    func retire(_ plugin: LoadedPlugin) {
        retiring.withLock { list in
            list.append(plugin)
            hasRetiring.store(true, ordering: .sequentiallyConsistent)
        }
        unloadIdle()
    }

    /// A handler, a call or a completion of `plugin` is over.
    func activityDidEnd(_ plugin: LoadedPlugin) {
        plugin.activityDidEnd()
        unloadIdle()
    }

    /// An agent instance `plugin` made is destroyed.
    func instanceDidEnd(_ plugin: LoadedPlugin) {
        plugin.instanceDidEnd()
        unloadIdle()
    }

    /// Unloads the retired versions nothing runs in or holds any more.
    func unloadIdle() {
        guard hasRetiring.load(ordering: .sequentiallyConsistent) else { return }
        let ready: [LoadedPlugin] = retiring.withLock { list in
            guard !list.isEmpty else { return [] }
            let idle = list.filter(\.isIdle)
            list.removeAll { plugin in idle.contains { $0 === plugin } }
            hasRetiring.store(!list.isEmpty, ordering: .sequentiallyConsistent)
            return idle
        }
        guard !ready.isEmpty else { return }
        // Unloaded from a task of its own, never from the thread that made it idle: that
        // thread may be a plugin's own, still returning from a reply() into the plugin's code.
        let (loader, logger) = (self.loader, self.logger)
        Task.detached {
            for plugin in ready {
                loader.unload(plugin)
                logger.info("plugin version retired", metadata: [
                    "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)",
                    "plugin.hash": "\(plugin.contentHash)", "unmapped": "\(!plugin.isSwift)",
                ])
            }
        }
    }
}
