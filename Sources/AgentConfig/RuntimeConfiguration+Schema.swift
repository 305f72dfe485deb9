extension RuntimeConfiguration {
    /// The sections the configuration knows, apart from `[plugin.NAME]`, and their keys.
    static let knownKeys: [(section: String, keys: [String])] = [
        ("runtime", ["host", "rpc_timeout", "workers", "client_id"]),
        ("host", ["listen", "max_message_bytes", "rpc_timeout"]),
        ("plugins", ["directory"]),
        ("log", ["level"]),
    ]

    /// The prefix of a plugin's section: `[plugin.NAME]`.
    static let pluginSectionPrefix = "plugin."

    /// Checks a parsed file against the schema and builds the configuration from it; what the
    /// file does not set keeps its default.
    /// - Parameter document: The parsed file.
    /// - Throws: ``ConfigurationError`` for the first unknown section, unknown key or bad value,
    ///   naming the file, line and key.
    public init(document: IniDocument) throws(ConfigurationError) {
        self.init(path: document.path)
        for section in document.sections {
            switch section.name {
            case "runtime": try applyRuntime(section)
            case "host": try applyHost(section)
            case "plugins": try applyPlugins(section, documentPath: document.path)
            case "log": try applyLog(section)
            default:
                guard section.name.hasPrefix(Self.pluginSectionPrefix) else {
                    throw unknownSection(section)
                }
                let name = String(section.name.dropFirst(Self.pluginSectionPrefix.count))
                guard !name.isEmpty else {
                    throw ConfigurationError(
                        .invalidSectionName, "[plugin.] has no plugin name; write [plugin.NAME]",
                        path: section.path, line: section.line, section: section.name)
                }
                pluginSettings[name] = section.values
                pluginSettingEntries[name] = section.entries
            }
        }
    }

    private mutating func applyRuntime(_ section: IniSection) throws(ConfigurationError) {
        for entry in section.entries {
            switch entry.key {
            case "host":
                hostAddress = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.hostAndPort(text, allowsPortZero: false).description
                }
            case "rpc_timeout":
                rpcTimeout = try Self.value(of: entry, SettingValue.seconds)
            case "workers":
                workers = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.integer(text, in: Self.workerRange, what: "handler threads")
                }
            case "client_id":
                guard !entry.value.isEmpty else {
                    throw .invalidValue(entry, "is empty; remove the key to have a client id generated")
                }
                clientID = entry.value
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    private mutating func applyHost(_ section: IniSection) throws(ConfigurationError) {
        for entry in section.entries {
            switch entry.key {
            case "listen":
                host.listen = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.hostAndPort(text, allowsPortZero: true).description
                }
            case "max_message_bytes":
                host.maxMessageBytes = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.byteCount(text, largest: HostSettings.largestMaxMessageBytes)
                }
            case "rpc_timeout":
                host.rpcTimeout = try Self.value(of: entry, SettingValue.seconds)
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    private mutating func applyPlugins(_ section: IniSection, documentPath: String) throws(ConfigurationError) {
        for entry in section.entries {
            switch entry.key {
            case "directory":
                guard !entry.value.isEmpty else {
                    throw .invalidValue(entry, "is empty; give the folder that holds the agent plugins (lib*.so)")
                }
                pluginDirectory = Self.resolve(entry.value, relativeToFolderOf: documentPath)
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    private mutating func applyLog(_ section: IniSection) throws(ConfigurationError) {
        for entry in section.entries {
            switch entry.key {
            case "level":
                let level = entry.value.lowercased()
                guard Self.logLevels.contains(level) else {
                    throw .invalidValue(
                        entry,
                        "\(quoted(entry.value)) is not a log level; use one of \(Self.logLevels.joined(separator: ", "))")
                }
                logLevel = level
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    // MARK: - Values

    /// Parses an entry's value, turning a refusal into an error located at the entry.
    private static func value<Value>(
        of entry: IniEntry, _ parse: (String) throws(SettingValueError) -> Value
    ) throws(ConfigurationError) -> Value {
        do throws(SettingValueError) {
            return try parse(entry.value)
        } catch {
            throw .invalidValue(entry, error.message)
        }
    }

    /// `path` if absolute; otherwise `path` within the folder of `documentPath`, with `.` and
    /// empty components removed (`..` is kept: lexically removing it is wrong across symbolic
    /// links).
    static func resolve(_ path: String, relativeToFolderOf documentPath: String) -> String {
        guard !path.hasPrefix("/") else { return path }
        let folder: Substring
        if let slash = documentPath.lastIndex(of: "/") {
            folder = documentPath[...slash]
        } else {
            folder = ""
        }
        let joined = folder + path
        let isAbsolute = joined.hasPrefix("/")
        let components = joined.split(separator: "/").filter { $0 != "." }
        let body = components.joined(separator: "/")
        if isAbsolute { return "/" + body }
        return body.isEmpty ? "." : body
    }

    // MARK: - Unknown names

    private func unknownSection(_ section: IniSection) -> ConfigurationError {
        let known = Self.knownKeys.map(\.section)
        var message = "unknown section [\(section.name)]"
        if section.name.hasPrefix("plugins.") {
            message += " (did you mean [plugin.\(section.name.dropFirst("plugins.".count))]?)"
        } else if let suggestion = Self.closest(to: section.name, among: known) {
            message += " (did you mean [\(suggestion)]?)"
        }
        message += "; the sections are \(known.map { "[\($0)]" }.joined(separator: ", ")) and [plugin.NAME]"
        return ConfigurationError(
            .unknownSection, message, path: section.path, line: section.line, section: section.name)
    }

    private static func unknownKey(_ entry: IniEntry) -> ConfigurationError {
        let known = knownKeys.first { $0.section == entry.section }?.keys ?? []
        var message = "unknown key"
        if let home = knownKeys.first(where: { $0.section != entry.section && $0.keys.contains(entry.key) }) {
            message += " here (it belongs in [\(home.section)])"
        } else if let suggestion = closest(to: entry.key, among: known) {
            message += " (did you mean \(suggestion)?)"
        }
        message += "; the keys of [\(entry.section)] are \(known.joined(separator: ", "))"
        return ConfigurationError(
            .unknownKey, message, path: entry.path, line: entry.line, section: entry.section, key: entry.key)
    }

    /// The candidate within two edits of `word` (ignoring case), if there is one.
    private static func closest(to word: String, among candidates: [String]) -> String? {
        let word = Array(word.lowercased().unicodeScalars)
        guard word.count <= 64 else { return nil }
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = editDistance(word, Array(candidate.lowercased().unicodeScalars))
            if distance <= 2, distance < (best?.distance ?? .max) {
                best = (candidate, distance)
            }
        }
        return best?.candidate
    }

    /// Levenshtein distance.
    private static func editDistance(_ a: [Unicode.Scalar], _ b: [Unicode.Scalar]) -> Int {
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
