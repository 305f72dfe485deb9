import AgentCore
import AgentPluginABI
import CRuntimeSupport
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Why a plugin was refused: the file and the reason, in words a user can act on.
public struct PluginLoadError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let value: String
        private init(_ value: String) { self.value = value }
        /// Not readable, or not a loadable shared library.
        public static let notLoadable = Code("not loadable")
        /// No `agentd_plugin_entry` symbol: not an agentd plugin.
        public static let noEntry = Code("no entry symbol")
        /// Built for another ABI major version.
        public static let abiMismatch = Code("ABI mismatch")
        /// The entry returned NULL.
        public static let initFailed = Code("init failed")
        /// The descriptor breaks the header's rules (sizes, names, tables).
        public static let invalidDescriptor = Code("invalid descriptor")
        /// An agent type is already served by another loaded plugin.
        public static let duplicateAgentType = Code("duplicate agent type")
        public var description: String { value }
    }

    public var code: Code
    public var path: String
    public var reason: String

    public var description: String { "plugin \(path) refused (\(code)): \(reason)" }
}

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

    /// - Parameter shadowDirectory: where the shadow copies go; by default a new folder of
    ///   this loader's own under the temporary directory (two runtimes in one process must
    ///   never share shadow paths: dlopen of a path already loaded returns that image).
    public init(shadowDirectory: String? = nil, logger: Logger) throws {
        let directory = shadowDirectory
            ?? (NSTemporaryDirectory() as NSString).appendingPathComponent(
                "agentd-\(getpid())-\(UUID().uuidString.prefix(8).lowercased())-plugins")
        self.logger = logger
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
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

    /// Loads and validates the plugin at `path`.
    ///
    /// - Parameters:
    ///   - settings: each plugin name's `[plugin.NAME]` settings; the plugin gets its own.
    ///   - takenAgentTypes: agent types other loaded plugins serve (refused here).
    /// - Throws: ``PluginLoadError`` naming the file and the reason; nothing stays loaded.
    public func load(path: String, settings: [String: [String: String]], takenAgentTypes: Set<String>)
        throws(PluginLoadError) -> LoadedPlugin {
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
        let isSwift = ELFImage.registersWithSwiftRuntime(data)
        let number = counter.withLock { value -> Int in
            value += 1
            return value
        }
        let base = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let shadow = (shadowDirectory as NSString).appendingPathComponent("\(base)-\(hash)-\(number).so")
        guard FileManager.default.createFile(atPath: shadow, contents: data) else {
            throw refuse(.notLoadable, "cannot write its shadow copy \(shadow)")
        }
        // Swift images must never be unloaded: the Swift runtime keeps pointers into them.
        let flags = RTLD_NOW | RTLD_LOCAL | (isSwift ? RTLD_NODELETE : 0)
        guard let handle = dlopen(shadow, flags) else {
            let reason = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            unlink(shadow)
            throw refuse(.notLoadable, reason)
        }
        var keep = false
        var reference: PendingPluginReference?
        defer {
            if !keep {
                if let reference { PluginReferences.discard(reference) }
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
        let pending = PendingPluginReference(path: path, logger: logger)
        reference = pending
        guard let descriptor = withExtendedLifetime(pending, {
            entry(UnsafePointer(HostAPI.table), pending.opaque)
        }) else {
            throw refuse(.initFailed, "its entry returned no descriptor (see the plugin's log lines above)")
        }
        let imageBase = agentd_image_base(symbol)
        let plugin = try validate(
            descriptor, path: path, hash: hash, isSwift: isSwift, handle: handle, imageBase: imageBase, shadow: shadow,
            settings: settings, takenAgentTypes: takenAgentTypes, refuse: refuse)
        pending.resolve(to: plugin)
        keep = true
        return plugin
    }

    private func validate(
        _ descriptor: UnsafePointer<agentd_plugin>, path: String, hash: String, isSwift: Bool,
        handle: UnsafeMutableRawPointer, imageBase: UnsafeRawPointer?, shadow: String, settings: [String: [String: String]],
        takenAgentTypes: Set<String>, refuse: (PluginLoadError.Code, String) -> PluginLoadError
    ) throws(PluginLoadError) -> LoadedPlugin {
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
        let version = plugin.version.map { String(cString: $0) } ?? ""
        guard plugin.agent_type_count == 0 || plugin.agent_types != nil else {
            throw refuse(.invalidDescriptor, "plugin \(name): agent_type_count is \(plugin.agent_type_count) but agent_types is NULL")
        }
        guard plugin.agent_type_count <= 10_000 else {
            throw refuse(.invalidDescriptor, "plugin \(name): agent_type_count \(plugin.agent_type_count) is not believable")
        }
        var types: [PluginAgentType] = []
        var seen = Set<String>()
        for index in 0..<plugin.agent_type_count {
            let typePointer = plugin.agent_types! + index
            let type = typePointer.pointee
            guard type.size >= UInt32(MemoryLayout<agentd_agent_type>.size) else {
                throw refuse(.invalidDescriptor, "plugin \(name): agent type #\(index) has size \(type.size), smaller than ABI 1.0's \(MemoryLayout<agentd_agent_type>.size)")
            }
            guard let typeNamePointer = type.name, case let typeName = String(cString: typeNamePointer),
                  AgentID.isValidType(typeName) else {
                throw refuse(.invalidDescriptor, "plugin \(name): agent type #\(index) has no valid name (letters, digits, '_', '-', '.')")
            }
            guard seen.insert(typeName).inserted else {
                throw refuse(.duplicateAgentType, "plugin \(name) declares agent type '\(typeName)' twice")
            }
            guard !takenAgentTypes.contains(typeName) else {
                throw refuse(.duplicateAgentType, "plugin \(name): agent type '\(typeName)' is already served by another loaded plugin")
            }
            var subscriptions: [Subscription.Kind] = []
            if type.subscription_count > 0 {
                guard let list = type.subscriptions else {
                    throw refuse(.invalidDescriptor, "agent type '\(typeName)': subscription_count is \(type.subscription_count) but subscriptions is NULL")
                }
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
            }
            var handlers: [String: agentd_handler_fn] = [:]
            var fallback: agentd_handler_fn?
            if type.handler_count > 0 {
                guard let list = type.handlers else {
                    throw refuse(.invalidDescriptor, "agent type '\(typeName)': handler_count is \(type.handler_count) but handlers is NULL")
                }
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
            }
            types.append(PluginAgentType(
                name: typeName, subscriptions: subscriptions, handlers: handlers, fallback: fallback,
                descriptor: typePointer))
        }
        let loaded = LoadedPlugin(
            name: name, version: version, path: path, contentHash: hash, isSwift: isSwift, agentTypes: types,
            handle: handle, imageBase: imageBase, descriptor: descriptor, shadowPath: shadow,
            settings: settings[name] ?? [:])
        for type in types { type.plugin = loaded }
        return loaded
    }

    /// Unloads a plugin no code runs in any more: calls its `unload`, then `dlclose`s it
    /// (a Swift image stays mapped; see RTLD_NODELETE) and removes the shadow copy.
    public func unload(_ plugin: LoadedPlugin) {
        if plugin.descriptor.pointee.size >= UInt32(MemoryLayout<agentd_plugin>.size),
           let unload = plugin.descriptor.pointee.unload {
            unload()
        }
        dlclose(plugin.handle)
        unlink(plugin.shadowPath)
        PluginReferences.forget(plugin)
    }
}

import Synchronization

/// The `agentd_plugin_ref *` a plugin receives: resolvable to its ``LoadedPlugin`` once
/// validated, and usable (for `log` and `setting`) already while its entry runs.
final class PendingPluginReference: @unchecked Sendable {
    // @unchecked Sendable: `plugin` is written once (resolve) with `PluginReferences`' lock
    // held, and read only through that registry.
    let path: String
    /// The loading runtime's logger (for `log` calls, which may come before any agent exists).
    let logger: Logger
    var opaque: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        PluginReferences.register(self)
    }

    func resolve(to plugin: LoadedPlugin) {
        PluginReferences.resolve(self, to: plugin)
    }
}

/// Maps the opaque plugin references handed to plugins back to what they name, and refuses
/// stale or foreign pointers instead of dereferencing them.
enum PluginReferences {
    private struct Entry {
        var reference: PendingPluginReference
        var plugin: LoadedPlugin?
    }
    private static let table = Mutex<[UInt: Entry]>([:])

    private static func key(_ reference: PendingPluginReference) -> UInt {
        UInt(bitPattern: Unmanaged.passUnretained(reference).toOpaque())
    }

    static func register(_ reference: PendingPluginReference) {
        let key = key(reference)
        table.withLock { $0[key] = Entry(reference: reference) }
    }

    static func resolve(_ reference: PendingPluginReference, to plugin: LoadedPlugin) {
        let key = key(reference)
        table.withLock { $0[key]?.plugin = plugin }
    }

    static func discard(_ reference: PendingPluginReference) {
        let key = key(reference)
        table.withLock { _ = $0.removeValue(forKey: key) }
    }

    static func forget(_ plugin: LoadedPlugin) {
        table.withLock { table in
            for (key, entry) in table where entry.plugin === plugin { table[key] = nil }
        }
    }

    /// The plugin behind `pointer` (nil while its entry runs), and its path.
    static func lookup(_ pointer: OpaquePointer?) -> (path: String, plugin: LoadedPlugin?, reference: PendingPluginReference)? {
        guard let pointer else { return nil }
        let key = UInt(bitPattern: Int(bitPattern: pointer))
        return table.withLock { table in
            table[key].map { ($0.reference.path, $0.plugin, $0.reference) }
        }
    }

    /// The opaque reference for a loaded plugin (what its create() receives).
    static func opaque(for plugin: LoadedPlugin) -> OpaquePointer? {
        let key = table.withLock { table in table.first { $0.value.plugin === plugin }?.key }
        return key.flatMap { OpaquePointer(bitPattern: $0) }
    }
}

/// A 64-bit FNV-1a hash of a file's bytes, in hex: enough to tell versions apart in logs and
/// to notice a rewrite with the same content (not a security measure).
enum ContentHash {
    static func of(_ data: Data) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        data.withUnsafeBytes { bytes in
            for byte in bytes {
                hash ^= UInt64(byte)
                hash &*= 0x0000_0100_0000_01b3
            }
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Facts read off an ELF file's headers.
enum ELFImage {
    /// Why `data` cannot be loaded safely, or nil. dlopen maps a library's segments as its
    /// program headers say; a file cut short (half written) would fault the whole process
    /// (SIGBUS) when those pages are touched, so every segment must lie within the file.
    static func problem(_ data: Data) -> String? {
        data.withUnsafeBytes { bytes -> String? in
            guard bytes.count >= 64, bytes[0] == 0x7f, bytes[1] == 0x45, bytes[2] == 0x4c, bytes[3] == 0x46 else {
                return "not an ELF shared library"
            }
            guard bytes[4] == 2, bytes[5] == 1 else { return "not a 64-bit little-endian ELF file" }
            let type = bytes.loadUnaligned(fromByteOffset: 0x10, as: UInt16.self)
            guard type == 3 else { return "an ELF file but not a shared library (type \(type))" }
            let machine = bytes.loadUnaligned(fromByteOffset: 0x12, as: UInt16.self)
            #if arch(x86_64)
            guard machine == 62 else { return "built for another CPU (ELF machine \(machine)), not x86-64" }
            #elseif arch(arm64)
            guard machine == 183 else { return "built for another CPU (ELF machine \(machine)), not AArch64" }
            #endif
            let headerOffset = Int(bytes.loadUnaligned(fromByteOffset: 0x20, as: UInt64.self))
            let headerSize = Int(bytes.loadUnaligned(fromByteOffset: 0x36, as: UInt16.self))
            let headerCount = Int(bytes.loadUnaligned(fromByteOffset: 0x38, as: UInt16.self))
            guard headerSize >= 56, headerCount > 0, headerOffset > 0,
                  headerOffset + headerSize * headerCount <= bytes.count else {
                return "truncated: its program headers lie past the end of the file (\(bytes.count) bytes; half written?)"
            }
            for index in 0..<headerCount {
                let header = headerOffset + index * headerSize
                guard bytes.loadUnaligned(fromByteOffset: header, as: UInt32.self) == 1 else { continue }  // PT_LOAD
                let offset = bytes.loadUnaligned(fromByteOffset: header + 0x08, as: UInt64.self)
                let size = bytes.loadUnaligned(fromByteOffset: header + 0x20, as: UInt64.self)
                guard offset <= UInt64(bytes.count), size <= UInt64(bytes.count) - offset else {
                    return "truncated: a loadable segment ends at byte \(offset + size) but the file has \(bytes.count) bytes (half written?)"
                }
            }
            let sectionOffset = Int(bytes.loadUnaligned(fromByteOffset: 0x28, as: UInt64.self))
            let sectionSize = Int(bytes.loadUnaligned(fromByteOffset: 0x3a, as: UInt16.self))
            let sectionCount = Int(bytes.loadUnaligned(fromByteOffset: 0x3c, as: UInt16.self))
            if sectionOffset != 0 && sectionOffset + sectionSize * sectionCount > bytes.count {
                return "truncated: its section headers lie past the end of the file (\(bytes.count) bytes; half written?)"
            }
            return nil
        }
    }

    /// Whether the image carries Swift metadata sections (`swift5_*`), which the Swift runtime
    /// registers when the image loads and keeps pointers into: such an image must never be
    /// unloaded. A C library linked without Swift's start files has none, even if it lists
    /// libswiftCore.so as needed.
    static func registersWithSwiftRuntime(_ data: Data) -> Bool {
        data.withUnsafeBytes { bytes -> Bool in
            // ELF64 little-endian only (what this runtime runs on); otherwise be safe.
            guard bytes.count >= 64, bytes[4] == 2, bytes[5] == 1 else { return true }
            let sectionOffset = Int(bytes.loadUnaligned(fromByteOffset: 0x28, as: UInt64.self))
            let entrySize = Int(bytes.loadUnaligned(fromByteOffset: 0x3a, as: UInt16.self))
            let count = Int(bytes.loadUnaligned(fromByteOffset: 0x3c, as: UInt16.self))
            let namesIndex = Int(bytes.loadUnaligned(fromByteOffset: 0x3e, as: UInt16.self))
            guard entrySize >= 64, count > 0, namesIndex < count,
                  sectionOffset > 0, sectionOffset + count * entrySize <= bytes.count else { return true }
            let namesHeader = sectionOffset + namesIndex * entrySize
            let namesOffset = Int(bytes.loadUnaligned(fromByteOffset: namesHeader + 0x18, as: UInt64.self))
            let namesSize = Int(bytes.loadUnaligned(fromByteOffset: namesHeader + 0x20, as: UInt64.self))
            guard namesOffset >= 0, namesOffset + namesSize <= bytes.count else { return true }
            let prefix = Array("swift5_".utf8)
            for index in 0..<count {
                let nameOffset = Int(bytes.loadUnaligned(fromByteOffset: sectionOffset + index * entrySize, as: UInt32.self))
                let start = namesOffset + nameOffset
                guard start + prefix.count <= namesOffset + namesSize else { continue }
                if bytes[start..<(start + prefix.count)].elementsEqual(prefix) { return true }
            }
            return false
        }
    }
}
