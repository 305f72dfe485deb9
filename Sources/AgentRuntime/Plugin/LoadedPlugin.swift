import AgentCore
import AgentPluginABI
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A plugin loaded into the process: its library handle, descriptor and agent types, and
/// what still runs in it (so that a replaced version is unloaded only once idle).
public final class LoadedPlugin: @unchecked Sendable, CustomStringConvertible {
    // @unchecked Sendable: every stored property is immutable after init (the counters are
    // atomics, the settings are behind a Mutex); `handle`, `imageBase` and `descriptor` are C
    // pointers the runtime only reads, valid until unload.

    /// The plugin's own name (from its descriptor).
    public let name: String
    public let version: String
    /// The file it was loaded from (not the shadow copy).
    public let path: String
    /// A hash of the file's content, for logs and to notice unchanged rewrites.
    public let contentHash: String
    /// Whether the library links the Swift runtime (and so may never be unloaded).
    public let isSwift: Bool
    let declarations: [AgentTypeDeclaration]
    /// The agent types it offers, in its descriptor's order.
    public var agentTypes: [PluginAgentType] {
        declarations.map { PluginAgentType(plugin: self, declaration: $0) }
    }

    let handle: UnsafeMutableRawPointer
    /// Where the library is mapped (to find the plugin a code address belongs to).
    let imageBase: UnsafeRawPointer?
    let descriptor: UnsafePointer<agentd_plugin>
    let shadowPath: String
    /// The `agentd_plugin_ref *` the plugin received (what its create() receives again).
    private let referenceBits: UInt
    var reference: OpaquePointer? { OpaquePointer(bitPattern: referenceBits) }
    /// The plugin's settings ([plugin.NAME]) as C strings, borrowed by `setting` callers
    /// until unload: the current ones, and every value a SIGHUP replaced (a plugin may still
    /// hold its view).
    private let settingStorage: Mutex<SettingStorage>

    private struct SettingStorage {
        var current: [String: (text: String, value: CString)]
        var replaced: [CString] = []
    }
    /// Its name, version and content hash as C text, for the crash record's notes.
    let crashIdentity: (name: CString, version: CString, hash: CString)
    /// Why its handlers are not called (nil: they are): `agentd run`'s supervisor disabled it
    /// after it crashed too often. Set once, by the reloader, before its types serve.
    public var disabled: String? { disabledReason.withLock { $0 } }
    private let disabledReason = Mutex<String?>(nil)
    /// ``disabled`` is set (read on every message, without the lock).
    let isDisabled = Atomic<Bool>(false)

    /// Its handlers are no longer called: every RPC to its types is answered with `reason`.
    func disable(because reason: String) {
        disabledReason.withLock { $0 = reason }
        isDisabled.store(true, ordering: .releasing)
    }

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

    init(descriptor validated: PluginDescriptor, path: String, contentHash: String, isSwift: Bool,
         handle: UnsafeMutableRawPointer, imageBase: UnsafeRawPointer?, descriptor: UnsafePointer<agentd_plugin>,
         shadowPath: String, reference: OpaquePointer, settings: [String: String]) {
        self.name = validated.name
        self.version = validated.version
        self.path = path
        self.contentHash = contentHash
        self.isSwift = isSwift
        self.declarations = validated.agentTypes
        self.referenceBits = UInt(bitPattern: Int(bitPattern: reference))
        self.handle = handle
        self.imageBase = imageBase
        self.descriptor = descriptor
        self.shadowPath = shadowPath
        settingStorage = Mutex(SettingStorage(current: settings.mapValues { ($0, CString($0)) }))
        crashIdentity = (CString(validated.name), CString(validated.version), CString(contentHash))
    }

    /// A setting's value as a borrowed C view (valid until unload, even after a SIGHUP replaced
    /// the value: later calls see the new one).
    func setting(_ key: String) -> agentd_str? {
        settingStorage.withLock { $0.current[key]?.value.view }
    }

    /// Takes `settings` (the plugin's `[plugin.NAME]` section re-read on SIGHUP) as the values
    /// `setting` answers from now on; views of replaced values stay valid until unload.
    /// - Returns: the keys whose value changed, was added or was removed, sorted.
    @discardableResult
    func replaceSettings(_ settings: [String: String]) -> [String] {
        settingStorage.withLock { storage in
            var changed: [String] = []
            var next: [String: (text: String, value: CString)] = [:]
            for (key, text) in settings {
                if let kept = storage.current[key], kept.text == text {
                    next[key] = kept
                } else {
                    next[key] = (text, CString(text))
                    changed.append(key)
                }
            }
            for (key, old) in storage.current where next[key]?.value !== old.value {
                storage.replaced.append(old.value)
                if next[key] == nil { changed.append(key) }
            }
            storage.current = next
            return changed.sorted()
        }
    }

    public var description: String { "\(name) \(version) (\(path), \(contentHash))" }
}
