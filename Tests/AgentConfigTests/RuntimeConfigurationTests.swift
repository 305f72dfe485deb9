import AgentConfig
import Foundation
import Testing

@Suite("RuntimeConfiguration")
struct RuntimeConfigurationTests {
    @Test("an empty file gives every default")
    func defaults() throws {
        let configuration = try RuntimeConfiguration.parse(text: "", path: "agentd.ini")
        #expect(configuration.path == "agentd.ini")
        #expect(configuration.hostAddress == nil)
        #expect(configuration.rpcTimeout == .seconds(60))
        #expect(configuration.workers == RuntimeConfiguration.defaultWorkers)
        #expect((1...256).contains(configuration.workers))
        #expect(configuration.clientID == nil)
        #expect(configuration.host == HostSettings(listen: "127.0.0.1:50051", maxMessageBytes: 4_194_304, rpcTimeout: .seconds(60)))
        #expect(configuration.pluginDirectory == nil)
        #expect(configuration.logLevel == "info")
        #expect(configuration.pluginSettings.isEmpty)
        #expect(configuration == RuntimeConfiguration(path: "agentd.ini"))
        #expect(configuration.state == StateSettings(store: .sqlite, path: nil, sync: .normal, idle: .seconds(300), maxResident: 100_000))
        #expect(configuration.state.resolvedPath(configurationPath: "/etc/agentd/agentd.ini") == "/etc/agentd/state/agents.db")
    }

    @Test("[state] and [agents]: the store, its file relative to the INI's folder, sync, idle time and resident bound")
    func stateSettings() throws {
        let text = """
            [state]
            store = SQLite
            path = data/agents.db
            sync = full

            [agents]
            idle_seconds = 0.5
            max_resident = 2000
            """
        let configuration = try RuntimeConfiguration.parse(text: text, path: "/etc/agentd/agentd.ini")
        #expect(configuration.state == StateSettings(
            store: .sqlite, path: "/etc/agentd/data/agents.db", sync: .full, idle: .milliseconds(500), maxResident: 2000))
        let hosts = try RuntimeConfiguration.parse(text: "[runtime]\nhost = a.example:1,  [::1]:2 ,b:3", path: "a.ini")
        #expect(hosts.hostAddress == "a.example:1, [::1]:2, b:3", "a failover list")
        #expect(throws: ConfigurationError.self) { try RuntimeConfiguration.parse(text: "[runtime]\nhost = a:1,,b:2", path: "a.ini") }
        let nats = try RuntimeConfiguration.parse(text: "[state]\nstore = nats\nnats = 10.0.0.5:4222, nats://10.0.0.6:4222", path: "a.ini")
        #expect(nats.state.store == .nats)
        #expect(nats.state.nats == ["nats://10.0.0.5:4222", "nats://10.0.0.6:4222"])
        let viaCluster = try RuntimeConfiguration.parse(text: "[state]\nstore = nats\n[cluster]\nnats = nats://10.0.0.7:4222", path: "a.ini")
        #expect(viaCluster.state.nats == nil && viaCluster.cluster?.nats == ["nats://10.0.0.7:4222"], "the cluster's servers, taken by the runtime")
        let missing = #expect(throws: ConfigurationError.self) { try RuntimeConfiguration.parse(text: "[state]\nstore = nats", path: "a.ini") }
        #expect(missing?.description == "a.ini: [state] nats: not set, and there is no [cluster] nats: [state] store = nats (line 2) needs the NATS servers, like nats = nats://10.0.0.5:4222")
        let badServer = #expect(throws: ConfigurationError.self) {
            try RuntimeConfiguration.parse(text: "[state]\nstore = nats\nnats = ftp://x:1", path: "a.ini")
        }
        #expect(badServer?.description.hasPrefix("a.ini:3: [state] nats:") == true)
        let none = try RuntimeConfiguration.parse(text: "[state]\nstore = none\n[agents]\nidle_seconds = 0", path: "a.ini")
        #expect(none.state.store == .none)
        #expect(none.state.idle == .zero)
    }

    @Test("every key of every section is read")
    func everyKey() throws {
        let text = """
            [runtime]
            host = agents.example.internal:50051
            rpc_timeout = 2.5
            workers = 8
            client_id = "worker ; 1"

            [host]
            listen = [::1]:0
            max_message_bytes = 16 MiB
            rpc_timeout = 0.25

            [plugins]
            directory = /opt/agents/plugins   ; absolute: kept as it is

            [log]
            level = Warning

            [plugin.greeter]
            greeting = "Hello"
            name = world

            [plugin.echo-plugin]
            """
        let configuration = try RuntimeConfiguration.parse(text: text, path: "/etc/agentd/agentd.ini")
        #expect(configuration.hostAddress == "agents.example.internal:50051")
        #expect(configuration.rpcTimeout == .milliseconds(2500))
        #expect(configuration.workers == 8)
        #expect(configuration.clientID == "worker ; 1")
        #expect(configuration.host.listen == "[::1]:0")
        #expect(configuration.host.maxMessageBytes == 16 * 1024 * 1024)
        #expect(configuration.host.rpcTimeout == .milliseconds(250))
        #expect(configuration.pluginDirectory == "/opt/agents/plugins")
        #expect(try configuration.requiredPluginDirectory() == "/opt/agents/plugins")
        #expect(configuration.logLevel == "warning")
        #expect(configuration.pluginSettings == [
            "greeter": ["greeting": "Hello", "name": "world"],
            "echo-plugin": [:],
        ])
        #expect(configuration.pluginSettingEntries["greeter"]?.map(\.key) == ["greeting", "name"])
        #expect(configuration.pluginSettingEntries["greeter"]?.map(\.line) == [19, 20])
    }

    @Test(
        "a relative plugin directory is resolved against the INI file's folder",
        arguments: [
            ("/etc/agentd/agentd.ini", "plugins", "/etc/agentd/plugins"),
            ("/etc/agentd/agentd.ini", "./plugins/", "/etc/agentd/plugins"),
            ("/agentd.ini", "plugins", "/plugins"),
            ("Config/agentd.ini", "../.build/debug", "Config/../.build/debug"),
            ("./Config//agentd.ini", "plugins", "Config/plugins"),
            ("agentd.ini", "plugins", "plugins"),
            ("agentd.ini", ".", "."),
            ("Config/agentd.ini", "/usr/lib/agents", "/usr/lib/agents"),
        ])
    func relativeDirectory(iniPath: String, directory: String, resolved: String) throws {
        let configuration = try RuntimeConfiguration.parse(
            text: "[plugins]\ndirectory = \(directory)\n", path: iniPath)
        #expect(configuration.pluginDirectory == resolved)
    }

    @Test("values in their accepted spellings", arguments: [
        ("[host]\nmax_message_bytes = 4194304", \RuntimeConfiguration.host.maxMessageBytes, 4_194_304),
        ("[host]\nmax_message_bytes = 512KiB", \RuntimeConfiguration.host.maxMessageBytes, 512 * 1024),
        ("[host]\nmax_message_bytes = 1 B", \RuntimeConfiguration.host.maxMessageBytes, 1),
        ("[host]\nmax_message_bytes = 2047 MiB", \RuntimeConfiguration.host.maxMessageBytes, 2047 * 1024 * 1024),
        ("[host]\nmax_message_bytes = 2147483647", \RuntimeConfiguration.host.maxMessageBytes, 2_147_483_647),
        ("[runtime]\nworkers = 1", \RuntimeConfiguration.workers, 1),
        ("[runtime]\nworkers = 256", \RuntimeConfiguration.workers, 256),
    ] as [(String, KeyPath<RuntimeConfiguration, Int> & Sendable, Int)])
    func integerSpellings(text: String, property: KeyPath<RuntimeConfiguration, Int> & Sendable, expected: Int) throws {
        #expect(try RuntimeConfiguration.parse(text: text, path: "a.ini")[keyPath: property] == expected)
    }

    @Test("timeouts are decimal seconds, exact to the nanosecond")
    func timeouts() throws {
        func timeout(_ value: String) throws -> Duration {
            try RuntimeConfiguration.parse(text: "[runtime]\nrpc_timeout = \(value)", path: "a.ini").rpcTimeout
        }
        #expect(try timeout("60") == .seconds(60))
        #expect(try timeout("0.5") == .milliseconds(500))
        #expect(try timeout("0.001") == .milliseconds(1))
        #expect(try timeout("1.000000001") == .seconds(1) + .nanoseconds(1))
        #expect(try timeout("86400") == .seconds(86400))
        #expect(try timeout("\"30\"") == .seconds(30))
    }

    @Test("IPv4, host names and bracketed IPv6 are accepted as HOST:PORT")
    func addresses() throws {
        func listen(_ value: String) throws -> String {
            try RuntimeConfiguration.parse(text: "[host]\nlisten = \(value)", path: "a.ini").host.listen
        }
        #expect(try listen("0.0.0.0:50051") == "0.0.0.0:50051")
        #expect(try listen("localhost:0") == "localhost:0")
        #expect(try listen("[::]:65535") == "[::]:65535")
        #expect(try listen("[fe80::1]:080") == "[fe80::1]:80")
        #expect(try listen("my_host-1.local:1") == "my_host-1.local:1")
    }

    /// A value or name the schema must refuse, and what the error must say.
    struct BadSetting: CustomTestStringConvertible, Sendable {
        var text: String
        var code: ConfigurationError.Code
        var line: Int
        var section: String?
        var key: String?
        var description: String
        var testDescription: String { text.split(separator: "\n").last.map(String.init) ?? text }
    }

    static let badSettings: [BadSetting] = [
        BadSetting(
            text: "[runtime]\nrpc_timeout = abc", code: .invalidValue, line: 2, section: "runtime", key: "rpc_timeout",
            description: "agentd.ini:2: [runtime] rpc_timeout: \"abc\" is not a number of seconds (write it like 60 or 0.5)"),
        BadSetting(
            text: "[runtime]\nrpc_timeout = 0", code: .invalidValue, line: 2, section: "runtime", key: "rpc_timeout",
            description: "agentd.ini:2: [runtime] rpc_timeout: \"0\" is not a positive number of seconds; the least is 0.001"),
        BadSetting(
            text: "[host]\nrpc_timeout = 0.0009", code: .invalidValue, line: 2, section: "host", key: "rpc_timeout",
            description: "agentd.ini:2: [host] rpc_timeout: \"0.0009\" is not a positive number of seconds; the least is 0.001"),
        BadSetting(
            text: "[runtime]\nrpc_timeout = -1", code: .invalidValue, line: 2, section: "runtime", key: "rpc_timeout",
            description: "agentd.ini:2: [runtime] rpc_timeout: \"-1\" is not a number of seconds (write it like 60 or 0.5)"),
        BadSetting(
            text: "[runtime]\nrpc_timeout = 1e3", code: .invalidValue, line: 2, section: "runtime", key: "rpc_timeout",
            description: "agentd.ini:2: [runtime] rpc_timeout: \"1e3\" is not a number of seconds (write it like 60 or 0.5)"),
        BadSetting(
            text: "[runtime]\nrpc_timeout = 86400.5", code: .invalidValue, line: 2, section: "runtime", key: "rpc_timeout",
            description: "agentd.ini:2: [runtime] rpc_timeout: \"86400.5\" seconds is too long; the most is 86400 (one day)"),
        BadSetting(
            text: "[runtime]\nrpc_timeout = 99999999999999999999999", code: .invalidValue, line: 2, section: "runtime", key: "rpc_timeout",
            description: "agentd.ini:2: [runtime] rpc_timeout: \"99999999999999999999999\" seconds is too long; the most is 86400 (one day)"),
        BadSetting(
            text: "[runtime]\nworkers = 0", code: .invalidValue, line: 2, section: "runtime", key: "workers",
            description: "agentd.ini:2: [runtime] workers: \"0\" is out of range: the number of handler threads must be from 1 to 256"),
        BadSetting(
            text: "[runtime]\nworkers = 257", code: .invalidValue, line: 2, section: "runtime", key: "workers",
            description: "agentd.ini:2: [runtime] workers: \"257\" is out of range: the number of handler threads must be from 1 to 256"),
        BadSetting(
            text: "[runtime]\nworkers = four", code: .invalidValue, line: 2, section: "runtime", key: "workers",
            description: "agentd.ini:2: [runtime] workers: \"four\" is not a whole number of handler threads (1 to 256)"),
        BadSetting(
            text: "[runtime]\nhost = localhost", code: .invalidValue, line: 2, section: "runtime", key: "host",
            description: "agentd.ini:2: [runtime] host: \"localhost\" has no port; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        BadSetting(
            text: "[runtime]\nhost = 127.0.0.1:0", code: .invalidValue, line: 2, section: "runtime", key: "host",
            description: "agentd.ini:2: [runtime] host: \"127.0.0.1:0\": port 0 cannot be connected to; give the port the host listens on"),
        BadSetting(
            text: "[host]\nlisten = 127.0.0.1:65536", code: .invalidValue, line: 2, section: "host", key: "listen",
            description: "agentd.ini:2: [host] listen: \"127.0.0.1:65536\" has no valid port: the port is a number from 0 to 65535"),
        BadSetting(
            text: "[host]\nlisten = :50051", code: .invalidValue, line: 2, section: "host", key: "listen",
            description: "agentd.ini:2: [host] listen: \":50051\" has no host before the port; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        BadSetting(
            text: "[host]\nlisten = ::1:50051", code: .invalidValue, line: 2, section: "host", key: "listen",
            description: "agentd.ini:2: [host] listen: \"::1:50051\": an IPv6 address goes in brackets, like [::1]:50051"),
        BadSetting(
            text: "[host]\nlisten = [::1]50051", code: .invalidValue, line: 2, section: "host", key: "listen",
            description: "agentd.ini:2: [host] listen: \"[::1]50051\" has no port after the IPv6 address; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        BadSetting(
            text: "[host]\nlisten = []:1", code: .invalidValue, line: 2, section: "host", key: "listen",
            description: "agentd.ini:2: [host] listen: \"[]:1\" does not hold an IPv6 address in its brackets; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        BadSetting(
            text: "[host]\nlisten = \"my host:1\"", code: .invalidValue, line: 2, section: "host", key: "listen",
            description: "agentd.ini:2: [host] listen: \"my host:1\": the host may only contain letters, digits, '-', '_' and '.'; write HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"),
        BadSetting(
            text: "[host]\nmax_message_bytes = 4MB", code: .invalidValue, line: 2, section: "host", key: "max_message_bytes",
            description: "agentd.ini:2: [host] max_message_bytes: \"4MB\" is not a number of bytes: write a whole number, optionally followed by KiB or MiB (1024-based), like 4194304 or 4 MiB"),
        BadSetting(
            text: "[host]\nmax_message_bytes = 0", code: .invalidValue, line: 2, section: "host", key: "max_message_bytes",
            description: "agentd.ini:2: [host] max_message_bytes: \"0\" is not a positive number of bytes"),
        BadSetting(
            text: "[host]\nmax_message_bytes = 2048 MiB", code: .invalidValue, line: 2, section: "host", key: "max_message_bytes",
            description: "agentd.ini:2: [host] max_message_bytes: \"2048 MiB\" is too large; the most is 2147483647 bytes (2 GiB - 1, gRPC's limit)"),
        BadSetting(
            text: "[state]\nstore = redis", code: .invalidValue, line: 2, section: "state", key: "store",
            description: "agentd.ini:2: [state] store: \"redis\" is not a state store; use sqlite, nats or none"),
        BadSetting(
            text: "[state]\nsync = always", code: .invalidValue, line: 2, section: "state", key: "sync",
            description: "agentd.ini:2: [state] sync: \"always\" is not a sync mode; use normal (a checkpoint survives the runtime being killed) or full (a power loss too)"),
        BadSetting(
            text: "[state]\npath = data/", code: .invalidValue, line: 2, section: "state", key: "path",
            description: "agentd.ini:2: [state] path: \"data/\" names a folder; give a file, such as data/agents.db"),
        BadSetting(
            text: "[agents]\nmax_resident = 0", code: .invalidValue, line: 2, section: "agents", key: "max_resident",
            description: "agentd.ini:2: [agents] max_resident: \"0\" is out of range: the number of agent instances must be from 1 to 100000000"),
        BadSetting(
            text: "[log]\nlevel = verbose", code: .invalidValue, line: 2, section: "log", key: "level",
            description: "agentd.ini:2: [log] level: \"verbose\" is not a log level; use one of trace, debug, info, notice, warning, error, critical"),
        BadSetting(
            text: "[log]\nformat = logfmt", code: .invalidValue, line: 2, section: "log", key: "format",
            description: "agentd.ini:2: [log] format: \"logfmt\" is not a log format; use one of text, json"),
        BadSetting(
            text: "[runtime]\nclient_id =", code: .invalidValue, line: 2, section: "runtime", key: "client_id",
            description: "agentd.ini:2: [runtime] client_id: is empty; remove the key to have a client id generated"),
        BadSetting(
            text: "[plugins]\ndirectory = \"\"", code: .invalidValue, line: 2, section: "plugins", key: "directory",
            description: "agentd.ini:2: [plugins] directory: is empty; give the folder that holds the agent plugins (lib*.so)"),
        BadSetting(
            text: "[runtime]\nworkers = 2\n\n[runtme]", code: .unknownSection, line: 4, section: "runtme", key: nil,
            description: "agentd.ini:4: unknown section [runtme] (did you mean [runtime]?); the sections are [runtime], [host], [plugins], [state], [agents], [log], [cluster] and [plugin.NAME]"),
        BadSetting(
            text: "[plugins.greeter]", code: .unknownSection, line: 1, section: "plugins.greeter", key: nil,
            description: "agentd.ini:1: unknown section [plugins.greeter] (did you mean [plugin.greeter]?); the sections are [runtime], [host], [plugins], [state], [agents], [log], [cluster] and [plugin.NAME]"),
        BadSetting(
            text: "[plugin.]\nk = v", code: .invalidSectionName, line: 1, section: "plugin.", key: nil,
            description: "agentd.ini:1: [plugin.] has no plugin name; write [plugin.NAME]"),
        BadSetting(
            text: "[runtime]\nrpc_timout = 5", code: .unknownKey, line: 2, section: "runtime", key: "rpc_timout",
            description: "agentd.ini:2: [runtime] rpc_timout: unknown key (did you mean rpc_timeout?); the keys of [runtime] are host, rpc_timeout, workers, client_id, tls_ca, tls_certificate, tls_key, auth_token, auth_token_file, publish_buffer, mailbox_limit, handler_timeout, metrics_listen, acknowledged_delivery"),
        BadSetting(
            text: "[runtime]\nlisten = 127.0.0.1:1", code: .unknownKey, line: 2, section: "runtime", key: "listen",
            description: "agentd.ini:2: [runtime] listen: unknown key here (it belongs in [host]); the keys of [runtime] are host, rpc_timeout, workers, client_id, tls_ca, tls_certificate, tls_key, auth_token, auth_token_file, publish_buffer, mailbox_limit, handler_timeout, metrics_listen, acknowledged_delivery"),
        BadSetting(
            text: "[runtime]\nacknowledged_delivery = maybe", code: .invalidValue, line: 2, section: "runtime", key: "acknowledged_delivery",
            description: "agentd.ini:2: [runtime] acknowledged_delivery: \"maybe\" is not true or false (whether publishes wait for the host's acknowledgement)"),
        BadSetting(
            text: "[host]\nlate_window_seconds = 601", code: .invalidValue, line: 2, section: "host", key: "late_window_seconds",
            description: "agentd.ini:2: [host] late_window_seconds: \"601\" is out of range: the late-subscriber window must be from 0 to 600 seconds"),
        BadSetting(
            text: "[host]\nlate_window_bytes = lots", code: .invalidValue, line: 2, section: "host", key: "late_window_bytes",
            description: "agentd.ini:2: [host] late_window_bytes: \"lots\" is not a number of bytes: write a whole number, optionally followed by KiB or MiB (1024-based), like 4194304 or 4 MiB"),
        BadSetting(
            text: "[log]\nLevel = info", code: .unknownKey, line: 2, section: "log", key: "Level",
            description: "agentd.ini:2: [log] Level: unknown key (did you mean level?); the keys of [log] are level, format"),
        BadSetting(
            text: "[plugins]\ndirectory = p\nrecursive = yes", code: .unknownKey, line: 3, section: "plugins", key: "recursive",
            description: "agentd.ini:3: [plugins] recursive: unknown key; the keys of [plugins] are directory"),
    ]

    @Test("each unknown name or bad value is refused naming the file, line and key", arguments: badSettings)
    func badSetting(_ bad: BadSetting) throws {
        let error = try #require(throws: ConfigurationError.self) {
            try RuntimeConfiguration.parse(text: bad.text, path: "agentd.ini")
        }
        #expect(error.code == bad.code)
        #expect(error.path == "agentd.ini")
        #expect(error.line == bad.line)
        #expect(error.section == bad.section)
        #expect(error.key == bad.key)
        #expect(error.description == bad.description)
    }

    @Test("acknowledged delivery is on unless the file turns it off; the late-subscriber window's time and bytes")
    func delivery() throws {
        let defaults = try RuntimeConfiguration.parse(text: "", path: "a.ini")
        #expect(defaults.acknowledgedDelivery)
        #expect(defaults.host.lateWindow == .seconds(5))
        #expect(defaults.host.lateWindowBytes == 64 * 1024 * 1024)
        let set = try RuntimeConfiguration.parse(
            text: "[runtime]\nacknowledged_delivery = false\n[host]\nlate_window_seconds = 0.5\nlate_window_bytes = 1 MiB\n", path: "a.ini")
        #expect(!set.acknowledgedDelivery)
        #expect(set.host.lateWindow == .milliseconds(500))
        #expect(set.host.lateWindowBytes == 1024 * 1024)
        #expect(try RuntimeConfiguration.parse(text: "[host]\nlate_window_seconds = 0\n", path: "a.ini").host.lateWindow == .zero)
    }

    @Test("[log] format is text unless the file says json (in any case)")
    func logFormat() throws {
        #expect(try RuntimeConfiguration.parse(text: "[log]\nlevel = info\n", path: "a.ini").logFormat == .text)
        #expect(try RuntimeConfiguration.parse(text: "[log]\nformat = json\n", path: "a.ini").logFormat == .json)
        #expect(try RuntimeConfiguration.parse(text: "[log]\nformat = JSON\nlevel = debug", path: "a.ini").logFormat == .json)
        #expect(try RuntimeConfiguration.parse(text: "[log]\nformat = text\n", path: "a.ini").logFormat == .text)
    }

    @Test("running agents without [plugins] directory is an error naming the file and key")
    func missingPluginDirectory() throws {
        let configuration = try RuntimeConfiguration.parse(text: "[log]\nlevel = info\n", path: "agentd.ini")
        let error = try #require(throws: ConfigurationError.self) {
            try configuration.requiredPluginDirectory()
        }
        #expect(error.code == .missingKey)
        #expect(error.line == nil)
        #expect(error.section == "plugins")
        #expect(error.key == "directory")
        #expect(error.description.hasPrefix("agentd.ini: [plugins] directory: not set; "))
    }

    @Test("command-line options override what the file says")
    func overrides() throws {
        var configuration = try RuntimeConfiguration.parse(text: "[host]\nlisten = 127.0.0.1:1\n", path: "a.ini")
        configuration.host.listen = try HostAndPort(parsing: "127.0.0.1:0").description
        configuration.logLevel = "debug"
        #expect(configuration.host.listen == "127.0.0.1:0")
        #expect(configuration.logLevel == "debug")
    }

    @Test("load reads the file and resolves the plugin directory against its folder")
    func loadFromDisk() throws {
        let folder = FileManager.default.temporaryDirectory
            .appendingPathComponent("agentconfig-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("agentd.ini")
        try Data("[plugins]\ndirectory = plugins\n[plugin.greeter]\ngreeting = \"Hi\"\n".utf8).write(to: file)

        let configuration = try RuntimeConfiguration.load(path: file.path)
        #expect(configuration.path == file.path)
        #expect(configuration.pluginDirectory == folder.appendingPathComponent("plugins").path)
        #expect(configuration.pluginSettings["greeter"] == ["greeting": "Hi"])

        let missing = folder.appendingPathComponent("missing.ini").path
        let notFound = try #require(throws: ConfigurationError.self) { try RuntimeConfiguration.load(path: missing) }
        #expect(notFound.code == .fileUnreadable)
        #expect(notFound.cause != nil)
        #expect(notFound.description == "\(missing): cannot open the configuration file: No such file or directory")

        let isFolder = try #require(throws: ConfigurationError.self) { try RuntimeConfiguration.load(path: folder.path) }
        #expect(isFolder.code == .fileUnreadable)
        #expect(isFolder.description == "\(folder.path): cannot read the configuration file: Is a directory")

        let big = folder.appendingPathComponent("big.ini")
        try Data(repeating: UInt8(ascii: "\n"), count: IniDocument.maximumFileSize + 1).write(to: big)
        let tooLarge = try #require(throws: ConfigurationError.self) { try RuntimeConfiguration.load(path: big.path) }
        #expect(tooLarge.code == .fileTooLarge)
        #expect(tooLarge.description.hasPrefix("\(big.path): the file is larger than 1 MiB"))
    }

    @Test("reading stops at the size limit, even for an endless file")
    func endlessFile() throws {
        let error = try #require(throws: ConfigurationError.self) { try IniDocument.load(path: "/dev/zero") }
        #expect(error.code == .fileTooLarge)
    }

    @Test("the example Config/agentd.ini is valid and says what the README promises")
    func exampleFile() throws {
        let repository = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = repository.appendingPathComponent("Config/agentd.ini").path
        let configuration = try RuntimeConfiguration.load(path: path)
        #expect(configuration.hostAddress == nil)
        #expect(configuration.host.listen == "127.0.0.1:50051")
        #expect(configuration.logLevel == "info")
        #expect(try configuration.requiredPluginDirectory() == repository.path + "/Config/../.build/plugins")
        #expect(configuration.pluginSettings["greeter-plugin"]?["greeting"] == "Hello")
        #expect(configuration.cluster == nil, "the [cluster] example is commented out: the host runs alone")
    }
}
