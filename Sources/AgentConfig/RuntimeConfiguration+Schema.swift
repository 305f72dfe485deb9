extension RuntimeConfiguration {
    /// The sections the configuration knows, apart from `[plugin.NAME]`, and their keys.
    static let knownKeys: [(section: String, keys: [String])] = [
        ("runtime", [
            "host", "rpc_timeout", "workers", "client_id", "tls_ca", "tls_certificate", "tls_key", "auth_token",
            "auth_token_file", "publish_buffer", "mailbox_limit", "handler_timeout", "metrics_listen",
            "acknowledged_delivery",
        ]),
        ("host", [
            "listen", "max_message_bytes", "rpc_timeout", "queue_limit_messages", "queue_limit_bytes",
            "outbound_budget_bytes", "tls_certificate", "tls_key", "tls_client_ca", "auth_tokens", "auth_tokens_file",
            "metrics_listen", "late_window_seconds", "late_window_bytes",
        ]),
        ("plugins", ["directory"]),
        ("state", ["store", "path", "sync", "nats"]),
        ("agents", ["idle_seconds", "max_resident"]),
        ("log", ["level", "format"]),
        ("cluster", [
            "nats", "name", "lease_seconds", "tls_ca", "tls_certificate", "tls_key", "token", "token_file",
            "credentials",
        ]),
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
            case "state": try applyState(section, documentPath: document.path)
            case "agents": try applyAgents(section)
            case "cluster": try applyCluster(section)
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
        if state.store == .nats, state.nats == nil, cluster == nil,
           let section = document.sections.first(where: { $0.name == "state" }) {
            throw ConfigurationError(
                .missingKey,
                "not set, and there is no [cluster] nats: [state] store = nats (line \(section["store"]?.line ?? section.line)) needs the NATS servers, like nats = nats://10.0.0.5:4222",
                path: section.path, section: "state", key: "nats")
        }
    }

    private mutating func applyRuntime(_ section: IniSection) throws(ConfigurationError) {
        var tokenEntry: IniEntry?
        for entry in section.entries {
            switch entry.key {
            case "host":
                // One host, or several (`A, B, C`): after losing its host the runtime moves on
                // to the next.
                hostAddress = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.list(text, advice: "list hosts as HOST:PORT, HOST:PORT") { host throws(SettingValueError) in
                        try SettingValue.hostAndPort(String(host), allowsPortZero: false).description
                    }.joined(separator: ", ")
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
            case "tls_ca":
                tlsCA = try Self.pemFile(entry, holding: .certificate)
            case "tls_certificate":
                tlsCertificate = try Self.pemFile(entry, holding: .certificate)
            case "tls_key":
                tlsKey = try Self.pemFile(entry, holding: .privateKey)
            case "auth_token", "auth_token_file":
                authToken = try Self.token(
                    entry, inlineKey: "auth_token", after: &tokenEntry,
                    inline: { text throws(SettingValueError) in try SettingValue.token(Substring(text), what: "the token") },
                    file: { entry throws(ConfigurationError) in try Self.tokenFile(entry, single: true)[0] })
            case "acknowledged_delivery":
                acknowledgedDelivery = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.boolean(text, what: "whether publishes wait for the host's acknowledgement")
                }
            case "publish_buffer":
                publishBuffer = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.integer(text, in: Self.publishBufferRange, what: "buffered publishes")
                }
            case "mailbox_limit":
                mailboxLimit = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.integer(text, in: Self.mailboxLimitRange, what: "messages")
                }
            case "handler_timeout":
                handlerTimeout = try Self.value(of: entry, SettingValue.seconds)
            case "metrics_listen":
                metricsListen = try Self.listenAddress(entry)
            default:
                throw Self.unknownKey(entry)
            }
        }
        try Self.checkPair(in: section)
    }

    private mutating func applyHost(_ section: IniSection) throws(ConfigurationError) {
        var tokensEntry: IniEntry?
        for entry in section.entries {
            switch entry.key {
            case "listen":
                host.listen = try Self.listenAddress(entry)
            case "metrics_listen":
                host.metricsListen = try Self.listenAddress(entry)
            case "max_message_bytes":
                host.maxMessageBytes = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.byteCount(text, largest: HostSettings.largestMaxMessageBytes)
                }
            case "rpc_timeout":
                host.rpcTimeout = try Self.value(of: entry, SettingValue.seconds)
            case "queue_limit_messages":
                host.queueLimitMessages = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.integer(text, in: HostSettings.queueLimitMessagesRange, what: "messages")
                }
            case "late_window_seconds":
                host.lateWindow = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.seconds(text, in: HostSettings.lateWindowRange, what: "the late-subscriber window")
                }
            case "late_window_bytes":
                host.lateWindowBytes = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.byteCount(text, largest: HostSettings.largestQueueLimitBytes, largestMeaning: "64 GiB")
                }
            case "queue_limit_bytes":
                host.queueLimitBytes = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.byteCount(text, largest: HostSettings.largestQueueLimitBytes, largestMeaning: "64 GiB")
                }
            case "outbound_budget_bytes":
                host.outboundBudgetBytes = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.byteCount(text, largest: HostSettings.largestQueueLimitBytes, largestMeaning: "64 GiB")
                }
            case "tls_certificate":
                host.tlsCertificate = try Self.pemFile(entry, holding: .certificate)
            case "tls_key":
                host.tlsKey = try Self.pemFile(entry, holding: .privateKey)
            case "tls_client_ca":
                host.tlsClientCA = try Self.pemFile(entry, holding: .certificate)
            case "auth_tokens", "auth_tokens_file":
                if let earlier = tokensEntry { throw Self.conflict(entry, with: earlier) }
                tokensEntry = entry
                host.authTokens = entry.key == "auth_tokens"
                    ? try Self.tokenList(entry) : try Self.tokenFile(entry, single: false)
            default:
                throw Self.unknownKey(entry)
            }
        }
        try Self.checkPair(in: section)
        if let authority = section["tls_client_ca"], host.tlsCertificate == nil {
            throw .invalidValue(
                authority,
                "mutual TLS needs the host to listen with TLS: set tls_certificate and tls_key in [host] too")
        }
    }

    /// Both or neither of a section's `tls_certificate` and `tls_key`.
    private static func checkPair(in section: IniSection) throws(ConfigurationError) {
        switch (section["tls_certificate"], section["tls_key"]) {
        case (let certificate?, nil):
            throw ConfigurationError(
                .missingKey,
                "not set, but tls_certificate is (line \(certificate.line)): TLS needs the certificate chain and its private key",
                path: section.path, section: section.name, key: "tls_key")
        case (nil, let key?):
            throw ConfigurationError(
                .missingKey,
                "not set, but tls_key is (line \(key.line)): TLS needs the certificate chain and its private key",
                path: section.path, section: section.name, key: "tls_certificate")
        default:
            return
        }
    }

    /// The token of `entry`, which is a section's `inlineKey` (the token itself) or its twin
    /// that names a file holding the token: one of the two, not both.
    /// - Parameter earlier: the twin seen before in the section, if any; becomes `entry`.
    private static func token(
        _ entry: IniEntry, inlineKey: String, after earlier: inout IniEntry?,
        inline: (String) throws(SettingValueError) -> String,
        file: (IniEntry) throws(ConfigurationError) -> String
    ) throws(ConfigurationError) -> String {
        if let earlier { throw conflict(entry, with: earlier) }
        earlier = entry
        guard entry.key == inlineKey else { return try file(entry) }
        guard !entry.value.isEmpty else {
            throw .invalidValue(entry, "is empty; remove the key to send no token")
        }
        return try value(of: entry, inline)
    }

    /// Two keys that say the same thing two ways (`auth_tokens` and `auth_tokens_file`).
    private static func conflict(_ entry: IniEntry, with earlier: IniEntry) -> ConfigurationError {
        .invalidValue(entry, "set together with \(earlier.key) (line \(earlier.line)); give the token\(entry.key.hasPrefix("auth_tokens") ? "s" : "") one way only")
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

    private mutating func applyState(_ section: IniSection, documentPath: String) throws(ConfigurationError) {
        for entry in section.entries {
            switch entry.key {
            case "store":
                guard let store = StateSettings.Store(rawValue: entry.value.lowercased()) else {
                    throw .invalidValue(entry, "\(quoted(entry.value)) is not a state store; use sqlite, nats or none")
                }
                state.store = store
            case "nats":
                guard !entry.value.isEmpty else {
                    throw .invalidValue(entry, "is empty; give the NATS servers, like nats://10.0.0.5:4222")
                }
                state.nats = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.list(text, advice: "list servers as nats://HOST:PORT, nats://HOST:PORT", SettingValue.natsServer)
                }
            case "path":
                guard !entry.value.isEmpty else {
                    throw .invalidValue(entry, "is empty; give the SQLite file agents' state is kept in (default \(StateSettings.defaultPath))")
                }
                guard !entry.value.hasSuffix("/") else {
                    throw .invalidValue(entry, "\(quoted(entry.value)) names a folder; give a file, such as \(entry.value)agents.db")
                }
                state.path = Self.resolve(entry.value, relativeToFolderOf: documentPath)
            case "sync":
                guard let sync = StateSettings.Sync(rawValue: entry.value.lowercased()) else {
                    throw .invalidValue(entry, "\(quoted(entry.value)) is not a sync mode; use normal (a checkpoint survives the runtime being killed) or full (a power loss too)")
                }
                state.sync = sync
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    private mutating func applyAgents(_ section: IniSection) throws(ConfigurationError) {
        for entry in section.entries {
            switch entry.key {
            case "idle_seconds":
                // 0: agents are never retired for idleness (max_resident still holds).
                state.idle = entry.value.allSatisfy({ $0 == "0" || $0 == "." }) && entry.value.contains("0")
                    ? .zero : try Self.value(of: entry, SettingValue.seconds)
            case "max_resident":
                state.maxResident = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.integer(text, in: StateSettings.maxResidentRange, what: "agent instances")
                }
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    private mutating func applyCluster(_ section: IniSection) throws(ConfigurationError) {
        var cluster = ClusterSettings(nats: [])
        var tokenEntry: IniEntry?
        for entry in section.entries {
            switch entry.key {
            case "nats":
                guard !entry.value.isEmpty else {
                    throw .invalidValue(entry, "is empty; give the NATS servers, like nats://10.0.0.5:4222, nats://10.0.0.6:4222")
                }
                cluster.nats = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.list(text, advice: "list servers as nats://HOST:PORT, nats://HOST:PORT", SettingValue.natsServer)
                }
            case "name":
                cluster.name = try Self.clusterName(entry)
            case "lease_seconds":
                cluster.lease = try Self.value(of: entry) { text throws(SettingValueError) in
                    try SettingValue.seconds(text, in: ClusterSettings.leaseRange, what: "the lease")
                }
            case "tls_ca":
                cluster.tlsCA = try Self.pemFile(entry, holding: .certificate).path
            case "tls_certificate":
                cluster.tlsCertificate = try Self.pemFile(entry, holding: .certificate).path
            case "tls_key":
                cluster.tlsKey = try Self.pemFile(entry, holding: .privateKey, usedBy: "nats.c").path
            case "token", "token_file":
                cluster.token = try Self.token(
                    entry, inlineKey: "token", after: &tokenEntry,
                    inline: { text throws(SettingValueError) in try SettingValue.natsToken(text, what: "the token") },
                    file: Self.natsTokenFile)
            case "credentials":
                cluster.credentialsFile = try Self.readableFile(entry, holding: "a NATS credentials file (.creds)")
            default:
                throw Self.unknownKey(entry)
            }
        }
        guard section["nats"] != nil else {
            throw ConfigurationError(
                .missingKey,
                "not set, but [cluster] is (line \(section.line)): give the NATS servers the cluster's hosts meet on, like nats = nats://10.0.0.5:4222, nats://10.0.0.6:4222",
                path: section.path, section: section.name, key: "nats")
        }
        try Self.checkPair(in: section)
        self.cluster = cluster
    }

    /// `[cluster] name`: one word of 1 to ``ClusterSettings/maximumNameLength`` characters.
    private static func clusterName(_ entry: IniEntry) throws(ConfigurationError) -> String {
        let name = entry.value
        guard !name.isEmpty else {
            throw .invalidValue(entry, "is empty; remove the key to have the host use HOSTNAME:PORT")
        }
        guard name.count <= ClusterSettings.maximumNameLength else {
            throw .invalidValue(
                entry, "is \(name.count) characters long; a host's name has at most \(ClusterSettings.maximumNameLength)")
        }
        for (index, character) in name.enumerated() {
            let what: String
            if character.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
                what = "a control character"
            } else if character.isWhitespace {
                what = "whitespace"
            } else {
                continue
            }
            throw .invalidValue(
                entry,
                "\(quoted(name)) holds \(what) (character \(index + 1)); a host's name is one word, such as host-a or 10.0.0.5:50051")
        }
        return name
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
            case "format":
                guard let format = LogFormat(rawValue: entry.value.lowercased()) else {
                    throw .invalidValue(
                        entry,
                        "\(quoted(entry.value)) is not a log format; use one of \(LogFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                logFormat = format
            default:
                throw Self.unknownKey(entry)
            }
        }
    }

    // MARK: - Values

    /// An address to listen on: `HOST:PORT`, port 0 allowed (a free port).
    private static func listenAddress(_ entry: IniEntry) throws(ConfigurationError) -> String {
        try value(of: entry) { text throws(SettingValueError) in
            try SettingValue.hostAndPort(text, allowsPortZero: true).description
        }
    }

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
