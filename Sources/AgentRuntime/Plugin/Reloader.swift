import AgentCore
import Foundation
import Logging
import Synchronization

/// Keeps the plugins in service in step with the plugin directory: loads a file dropped in,
/// swaps a changed one for its new version, withdraws a removed one — one rescan at a time,
/// while the runtime keeps serving.
///
/// A new version is loaded and validated before anything changes; if it is refused, the old
/// one keeps serving. Messages wait in runtime-owned mailboxes, so a swap loses none; each
/// agent moves to the new version after its current handler returns. The host's view (agent
/// types, subscriptions) is the ``HostRegistrations``' job; rescans and re-registrations after
/// a reconnection take turns in ``run()``.
final class Reloader: Sendable {
    /// What the reloader needs to know from the runtime's configuration.
    struct Settings: Sendable {
        var directory: String
        var probe: PluginProbe?
        var pluginSettings: [String: [String: String]]
        var maxRetiredSwiftImages: Int
        /// Tests only: called with the plugin's path after its shadow copy passed the probe
        /// and before it is loaded (the window where a swapped file was once loaded unprobed).
        var probed: (@Sendable (PluginLoader.ShadowCopy) -> Void)? = nil
        /// Plugin versions not to call, by content hash, with the reason (what every RPC to
        /// their types is answered with): `agentd run`'s supervisor disables a plugin that
        /// crashed too often. A new version (another hash) serves as usual.
        var disabledPlugins: [String: String] = [:]
    }

    private struct State: ~Copyable {
        /// What serves, by source file.
        var served: [String: LoadedPlugin] = [:]
        /// Files refused, with the content hash that was refused (not retried or logged again
        /// until the content changes).
        var refused: [String: String] = [:]
        /// Swift images that were replaced or removed but stay mapped.
        var retiredSwiftImages = 0
        var stopped = false
        var watcher: DirectoryWatcher?
        /// `[plugin.NAME]` settings by plugin name, for plugins loaded from now on (SIGHUP
        /// replaces them: ``replacePluginSettings(_:)``).
        var pluginSettings: [String: [String: String]]
    }

    private enum Request {
        case rescan(CheckedContinuation<Void, Never>?)
        case restore(CheckedContinuation<Result<Void, any Error>, Never>)
        case settings([String: [String: String]], CheckedContinuation<[String: [String]], Never>)
    }

    private let settings: Settings
    private let loader: PluginLoader
    private let router: LocalRouter
    private let registrations: HostRegistrations
    private let context: DispatchContext
    private let logger: Logger
    private let state: Mutex<State>
    private let requests: AsyncStream<Request>.Continuation
    private let pending: AsyncStream<Request>

    init(settings: Settings, loader: PluginLoader, router: LocalRouter, registrations: HostRegistrations,
         context: DispatchContext, logger: Logger) {
        self.settings = settings
        self.loader = loader
        self.router = router
        self.registrations = registrations
        self.context = context
        self.logger = logger
        state = Mutex(State(pluginSettings: settings.pluginSettings))
        (pending, requests) = AsyncStream.makeStream(of: Request.self)
    }

    /// Serves rescan and restore requests one at a time, in request order (the plugin swaps
    /// and host registrations never interleave), until ``stop()``.
    func run() async {
        for await request in pending {
            switch request {
            case .rescan(let waiter):
                await rescanNow()
                waiter?.resume()
            case .restore(let waiter):
                do {
                    try await registrations.restore(serving: router.servedTypes)
                    waiter.resume(returning: .success(()))
                } catch {
                    waiter.resume(returning: .failure(error))
                }
            case .settings(let settings, let waiter):
                waiter.resume(returning: applyPluginSettings(settings))
            }
        }
    }

    /// The plugins in service, by file name.
    var current: [LoadedPlugin] {
        state.withLock { state in state.served.sorted { $0.key < $1.key }.map(\.value) }
    }

    /// Rescans and returns once the rescan is done.
    func rescan() async {
        await withCheckedContinuation { continuation in
            requests.yield(.rescan(continuation))
        }
    }

    /// Registers every served agent type and subscription again (after a reconnection: the
    /// host may have forgotten them), between rescans.
    func restoreRegistrations() async throws {
        let result = await withCheckedContinuation { continuation in
            requests.yield(.restore(continuation))
        }
        try result.get()
    }

    /// Takes `settings` (every `[plugin.NAME]` section, re-read on SIGHUP) as the plugins'
    /// settings: the plugins in service answer `setting()` with them from now on (values handed
    /// out before stay valid until unload), and plugins loaded later get them. Between rescans,
    /// so that no plugin is loaded with the old ones after the new ones were taken.
    /// - Returns: the changed keys of each plugin in service whose settings changed.
    func replacePluginSettings(_ settings: [String: [String: String]]) async -> [String: [String]] {
        await withCheckedContinuation { continuation in
            requests.yield(.settings(settings, continuation))
        }
    }

    private func applyPluginSettings(_ settings: [String: [String: String]]) -> [String: [String]] {
        let served = state.withLock { state in
            state.pluginSettings = settings
            return Array(state.served.values)
        }
        var changed: [String: [String]] = [:]
        for plugin in served {
            let keys = plugin.replaceSettings(settings[plugin.name] ?? [:])
            if !keys.isEmpty { changed[plugin.name] = keys }
        }
        return changed
    }

    /// Asks for a rescan without waiting (the directory watcher, SIGHUP).
    func requestRescan() {
        requests.yield(.rescan(nil))
    }

    /// Starts watching the directory (inotify); changes trigger a rescan after a short quiet
    /// period, so that a file written in several steps is read once it is complete.
    func watch() {
        let directory = settings.directory
        do {
            let watcher = try DirectoryWatcher(directory: directory, quietPeriod: .milliseconds(150)) { [weak self] in
                self?.requestRescan()
            }
            state.withLock { $0.watcher = watcher }
            logger.info("watching the plugin directory", metadata: ["plugin.directory": "\(directory)"])
        } catch {
            logger.error("cannot watch the plugin directory; reload with SIGHUP", metadata: [
                "plugin.directory": "\(directory)", "error": "\(error)",
            ])
        }
    }

    /// Stops watching and taking requests (``run()`` returns once the current one is done);
    /// returns the plugins that were in service.
    func stop() -> [LoadedPlugin] {
        let watcher = state.withLock { state -> DirectoryWatcher? in
            state.stopped = true
            return state.watcher
        }
        watcher?.stop()
        requests.finish()
        return state.withLock { state in
            defer { state.served = [:] }
            return Array(state.served.values)
        }
    }

    // MARK: Rescanning

    private func rescanNow() async {
        guard !state.withLock({ $0.stopped }) else { return }
        let directory = settings.directory
        let files: [String]
        do {
            files = try PluginLoader.pluginFiles(in: directory)
        } catch {
            logger.error("cannot read the plugin directory", metadata: [
                "plugin.directory": "\(directory)", "error": "\(error.localizedDescription)",
            ])
            return
        }
        var hashes: [String: String] = [:]
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            hashes[file] = ContentHash.of(data)
        }
        let (served, refused) = state.withLock { ($0.served, $0.refused) }
        for (path, plugin) in served where hashes[path] == nil {
            await remove(plugin, path: path)
        }
        state.withLock { state in
            for path in state.refused.keys where hashes[path] == nil { state.refused[path] = nil }
        }
        for path in files {
            guard let hash = hashes[path] else { continue }
            if let plugin = served[path] {
                if plugin.contentHash != hash { await replace(plugin, path: path) }
            } else if refused[path] != hash {
                await add(path: path)
            }
        }
    }

    private func refuse(_ error: PluginLoadError, keeping old: LoadedPlugin? = nil) {
        context.metrics?.pluginRefused()
        var metadata: Logger.Metadata = [
            "plugin.path": "\(error.path)", "reason": "\(error.reason)", "code": "\(error.code)",
        ]
        // A refusal for live state depends on the agents, not on the file: tried again at the
        // next rescan.
        if error.code != .stateRefused,
           let hash = error.contentHash ?? FileManager.default.contents(atPath: error.path).map(ContentHash.of) {
            metadata["plugin.hash"] = "\(hash)"
            state.withLock { $0.refused[error.path] = hash }
        }
        if let old {
            metadata["serving.version"] = "\(old.version)"
            metadata["serving.hash"] = "\(old.contentHash)"
            logger.error("new plugin version refused; the old version keeps serving", metadata: metadata)
        } else {
            logger.error("plugin refused", metadata: metadata)
        }
    }

    /// Copies the plugin at `path` to a shadow path, probes that copy (when a probe is
    /// configured), checks that what is loaded is what was probed, and loads it. The original
    /// file may change at any moment: only the copy is ever probed or loaded.
    private func load(_ path: String, taken: Set<String>) throws(PluginLoadError) -> LoadedPlugin {
        let copy = try loader.copy(path)
        do throws(PluginLoadError) {
            return try load(copy, taken: taken)
        } catch {
            var refused = error
            refused.contentHash = copy.contentHash
            throw refused
        }
    }

    private func load(_ copy: PluginLoader.ShadowCopy, taken: Set<String>) throws(PluginLoadError) -> LoadedPlugin {
        let path = copy.path
        if let probe = settings.probe {
            switch probe.check(copy.shadowPath) {
            case .passed(let probedHash):
                settings.probed?(copy)
                let loadedHash = copy.currentHash
                guard probedHash == copy.contentHash, loadedHash == copy.contentHash else {
                    copy.discard()
                    throw PluginLoadError(
                        code: .notLoadable, path: path,
                        reason: "its shadow copy changed between the probe and the load (copied content hash \(copy.contentHash), probed \(probedHash), now \(loadedHash ?? "unreadable")); not loaded")
                }
            case .refused(let reason):
                copy.discard()
                throw PluginLoadError(code: .notLoadable, path: path, reason: reason)
            }
        }
        let plugin = try loader.load(copy, settings: state.withLock { $0.pluginSettings }, takenAgentTypes: taken, context: context)
        if let reason = settings.disabledPlugins[plugin.contentHash] {
            plugin.disable(because: reason)
            logger.warning("plugin disabled: its agent types are registered, and every RPC to them is answered with an error", metadata: [
                "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)", "plugin.path": "\(path)",
                "plugin.hash": "\(plugin.contentHash)", "reason": "\(reason)",
            ])
        }
        return plugin
    }

    private func add(path: String) async {
        let plugin: LoadedPlugin
        do {
            plugin = try load(path, taken: Set(router.servedTypes))
        } catch {
            refuse(error)
            return
        }
        // Served here before the host hears of them: the host routes to a type (a shared
        // type's keys above all) as soon as it is registered, and a message arriving in between
        // would be refused as "not served by this runtime".
        router.serve(plugin.agentTypes)
        let accepted = await registrations.register(plugin.agentTypes, plugin: plugin)
        let refused = Set(plugin.agentTypes.map(\.name)).subtracting(accepted.map(\.name))
        if !refused.isEmpty { router.forget(refused) }
        for type in accepted { await registrations.subscribe(type) }
        state.withLock { $0.served[path] = plugin }
        context.metrics?.pluginLoaded()
        logger.info("plugin loaded", metadata: [
            "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)", "plugin.path": "\(path)",
            "plugin.hash": "\(plugin.contentHash)", "agent.types": "\(accepted.map(\.name))",
            "plugin.swift": "\(plugin.isSwift)",
        ])
    }

    private func replace(_ old: LoadedPlugin, path: String) async {
        if old.isSwift {
            let (retired, limit) = (state.withLock { $0.retiredSwiftImages }, settings.maxRetiredSwiftImages)
            if retired >= limit {
                if let data = FileManager.default.contents(atPath: path) {
                    state.withLock { $0.refused[path] = ContentHash.of(data) }
                }
                context.metrics?.pluginRefused()
                logger.error("new plugin version refused; the old version keeps serving", metadata: [
                    "plugin.path": "\(path)", "plugin": "\(old.name)",
                    "reason": "\(retired) retired versions of Swift plugins are mapped already (the limit is \(limit)); Swift images can never be unloaded, so restart the runtime to replace it",
                ])
                return
            }
        }
        let oldNames = Set(old.agentTypes.map(\.name))
        let new: LoadedPlugin
        do {
            new = try load(path, taken: Set(router.servedTypes).subtracting(oldNames))
        } catch {
            refuse(error, keeping: old)
            return
        }
        // A new version must take over its live agents' state: tried on every resident agent
        // (snapshot of the old instance, restored into a trial instance of the new one).
        let refusals = await router.trialRestore(new.agentTypes)
        if let (agent, reason) = refusals.first {
            loader.unload(new)
            refuse(PluginLoadError(
                code: .stateRefused, path: path,
                reason: "plugin \(new.name) \(new.version) cannot take over the state of live agent \(agent): \(reason)\(refusals.count > 1 ? " (and of \(refusals.count - 1) more)" : "")"),
                keeping: old)
            return
        }
        let accepted = await registrations.register(new.agentTypes, plugin: new)
        let withdrawn = oldNames.subtracting(accepted.map(\.name))
        // The swap: from here new messages go to the new version; agents move over between
        // two messages; the old version is unloaded once nothing runs in it.
        router.serve(accepted, withdrawing: withdrawn)
        context.retirement.retire(old)
        if old.isSwift { state.withLock { $0.retiredSwiftImages += 1 } }
        for type in accepted { await registrations.subscribe(type) }
        for name in withdrawn { await registrations.withdraw(name) }
        state.withLock { $0.served[path] = new }
        context.metrics?.pluginReloaded()
        logger.info("plugin replaced", metadata: [
            "plugin": "\(new.name)", "plugin.path": "\(path)",
            "plugin.version": "\(new.version)", "plugin.hash": "\(new.contentHash)",
            "previous.version": "\(old.version)", "previous.hash": "\(old.contentHash)",
            "agent.types": "\(accepted.map(\.name))", "agent.types.withdrawn": "\(withdrawn.sorted())",
        ])
    }

    private func remove(_ plugin: LoadedPlugin, path: String) async {
        let names = Set(plugin.agentTypes.map(\.name))
        router.serve([], withdrawing: names)
        context.retirement.retire(plugin)
        if plugin.isSwift { state.withLock { $0.retiredSwiftImages += 1 } }
        for name in names.sorted() { await registrations.withdraw(name) }
        state.withLock { _ = $0.served.removeValue(forKey: path) }
        context.metrics?.pluginRemoved()
        logger.info("plugin removed", metadata: [
            "plugin": "\(plugin.name)", "plugin.version": "\(plugin.version)",
            "plugin.path": "\(path)", "plugin.hash": "\(plugin.contentHash)",
            "agent.types.withdrawn": "\(names.sorted())",
        ])
    }
}
