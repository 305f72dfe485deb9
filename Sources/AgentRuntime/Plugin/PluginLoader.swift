import AgentCore
import AgentPluginABI
import CRuntimeSupport
import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Loads plugins: copies each file to a private shadow path, `dlopen`s the copy, calls its
/// entry, and validates the descriptor before anything uses it.
///
/// The shadow copy means a file replaced or deleted on disk never changes a loaded image, and
/// a new version at the same path loads as a new image (dlopen of a path already loaded
/// returns the old one).
public final class PluginLoader: Sendable {
    /// The folder holding the shadow copies (removed by ``removeShadowDirectory()``).
    public let shadowDirectory: String
    private let counter = Mutex(0)

    /// Where the log lines of plugins that call `log` during their entry go.
    let logger: Logger
    /// The handles the loaded plugins receive (`agentd_plugin_ref *`).
    private let references: HandleTable<PluginReference>
    /// Keeps the references' space alive for a loader made on its own.
    private let ownSpace: HandleSpace?

    /// A loader of its own, for checking plugins outside a runtime (`agentd plugin check`):
    /// their `log` calls go to `logger`, and `plugin_publish`/`plugin_send` are unavailable.
    /// - Parameter shadowDirectory: where the shadow copies go; by default a new folder of
    ///   this loader's own under the temporary directory (two runtimes in one process must
    ///   never share shadow paths: dlopen of a path already loaded returns that image).
    public convenience init(shadowDirectory: String? = nil, logger: Logger) throws {
        let space = HandleSpace()
        try self.init(shadowDirectory: shadowDirectory, references: space.plugins, ownSpace: space, logger: logger)
    }

    /// A runtime's loader: the plugins' handles are issued in its handle space.
    init(shadowDirectory: String? = nil, references: HandleTable<PluginReference>, ownSpace: HandleSpace? = nil,
         logger: Logger) throws {
        let directory = shadowDirectory
            ?? (NSTemporaryDirectory() as NSString).appendingPathComponent(
                "agentd-\(getpid())-\(UUID().uuidString.prefix(8).lowercased())-plugins")
        self.logger = logger
        self.references = references
        self.ownSpace = ownSpace
        // Only this user may write there: a shadow copy is probed, then loaded, by path.
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        self.shadowDirectory = directory
    }

    public func removeShadowDirectory() {
        try? FileManager.default.removeItem(atPath: shadowDirectory)
    }

    /// The `.so` files of `directory`, sorted by name.
    public static func pluginFiles(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0.hasSuffix(".so") && !$0.hasPrefix(".") }
            .sorted()
            .map { (directory as NSString).appendingPathComponent($0) }
    }

    /// A plugin file's private copy, made before it is probed and loaded: what is probed and
    /// what is loaded are the same bytes, whatever happens to the original meanwhile.
    struct ShadowCopy: Sendable {
        /// The original file.
        var path: String
        /// The copy in ``PluginLoader/shadowDirectory``.
        var shadowPath: String
        /// The content hash of the bytes copied.
        var contentHash: String
        var isSwift: Bool

        /// Removes the copy (it was refused).
        func discard() { unlink(shadowPath) }

        /// The content hash of the copy as it is now on disk (nil: unreadable).
        var currentHash: String? {
            FileManager.default.contents(atPath: shadowPath).map(ContentHash.of)
        }
    }

    /// Loads and validates the plugin at `path`.
    ///
    /// - Parameters:
    ///   - settings: each plugin name's `[plugin.NAME]` settings; the plugin gets its own.
    ///   - takenAgentTypes: agent types other loaded plugins serve (refused here).
    /// - Throws: ``PluginLoadError`` naming the file and the reason; nothing stays loaded.
    public func load(path: String, settings: [String: [String: String]], takenAgentTypes: Set<String>)
        throws(PluginLoadError) -> LoadedPlugin {
        try load(copy(path), settings: settings, takenAgentTypes: takenAgentTypes, context: nil)
    }

    /// Copies the plugin at `path` to a new shadow path (after checking it is a loadable ELF
    /// image), to be probed and loaded from there.
    func copy(_ path: String) throws(PluginLoadError) -> ShadowCopy {
        func refuse(_ code: PluginLoadError.Code, _ reason: String) -> PluginLoadError {
            PluginLoadError(code: code, path: path, reason: reason)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw refuse(.notLoadable, "cannot read the file")
        }
        if let problem = ELFImage.problem(data) {
            throw refuse(.notLoadable, problem)
        }
        let hash = ContentHash.of(data)
        let number = counter.withLock { value -> Int in
            value += 1
            return value
        }
        let base = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let shadow = (shadowDirectory as NSString).appendingPathComponent("\(base)-\(hash)-\(number).so")
        guard FileManager.default.createFile(atPath: shadow, contents: data, attributes: [.posixPermissions: 0o500]) else {
            throw refuse(.notLoadable, "cannot write its shadow copy \(shadow)")
        }
        return ShadowCopy(path: path, shadowPath: shadow, contentHash: hash, isSwift: ELFImage.registersWithSwiftRuntime(data))
    }

    /// Loads a plugin from its shadow copy (removed if it is refused); `context` (a runtime's)
    /// serves its calls.
    func load(_ copy: ShadowCopy, settings: [String: [String: String]], takenAgentTypes: Set<String>,
              context: DispatchContext?) throws(PluginLoadError) -> LoadedPlugin {
        let (path, shadow, hash, isSwift) = (copy.path, copy.shadowPath, copy.contentHash, copy.isSwift)
        func refuse(_ code: PluginLoadError.Code, _ reason: String) -> PluginLoadError {
            PluginLoadError(code: code, path: path, reason: reason)
        }
        // Swift images must never be unloaded: the Swift runtime keeps pointers into them.
        let flags = RTLD_NOW | RTLD_LOCAL | (isSwift ? RTLD_NODELETE : 0)
        guard let handle = dlopen(shadow, flags) else {
            let reason = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            unlink(shadow)
            throw refuse(.notLoadable, reason)
        }
        var keep = false
        var reference: PluginReference?
        defer {
            if !keep {
                if let reference { _ = references.remove(reference.handle) }
                dlclose(handle)
                unlink(shadow)
            }
        }
        guard let symbol = dlsym(handle, AGENTD_PLUGIN_ENTRY_SYMBOL) else {
            throw refuse(.noEntry, "it does not export \(AGENTD_PLUGIN_ENTRY_SYMBOL), so it is not an agentd plugin")
        }
        let entry = unsafeBitCast(symbol, to: agentd_plugin_entry_fn.self)
        // The plugin reference must exist before the entry runs (the entry may call `log`
        // or `setting` with it); it is completed once the descriptor is validated.
        let logger = self.logger
        let pending = references.insert { PluginReference(handle: $0, path: path, logger: logger, context: context) }
        reference = pending
        guard let descriptor = entry(UnsafePointer(HostAPI.table), pending.handle) else {
            throw refuse(.initFailed, "its entry returned no descriptor (see the plugin's log lines above)")
        }
        let validated = try PluginDescriptor(validating: descriptor, path: path, takenAgentTypes: takenAgentTypes, settings: settings)
        let plugin = LoadedPlugin(
            descriptor: validated, path: path, contentHash: hash, isSwift: isSwift, handle: handle,
            imageBase: agentd_image_base(symbol), descriptor: descriptor, shadowPath: shadow,
            reference: pending.handle, settings: settings[validated.name] ?? [:])
        pending.resolve(to: plugin)
        keep = true
        CrashRecord.noteCode(containing: UnsafeRawPointer(symbol), pluginName: validated.name, contentHash: hash)
        return plugin
    }

    /// Unloads a plugin no code runs in any more: calls its `unload`, then `dlclose`s it
    /// (a Swift image stays mapped; see RTLD_NODELETE) and removes the shadow copy.
    public func unload(_ plugin: LoadedPlugin) {
        if plugin.descriptor.pointee.size >= UInt32(MemoryLayout<agentd_plugin>.size),
           let unload = plugin.descriptor.pointee.unload {
            unload()
        }
        if let base = plugin.imageBase { CrashRecord.forgetCode(containing: base) }
        dlclose(plugin.handle)
        unlink(plugin.shadowPath)
        references.remove(plugin.reference)?.resolve(to: nil)
    }
}

