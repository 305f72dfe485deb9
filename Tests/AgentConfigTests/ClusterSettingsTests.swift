import AgentConfig
import Foundation
import Testing

/// `[cluster]`: the NATS servers the hosts meet on, this host's name and lease, and the files
/// and token for reaching NATS.
@Suite("RuntimeConfiguration: [cluster]")
struct ClusterSettingsTests {
    typealias Folder = SecuritySettingsTests.Folder
    typealias BadSetting = SecuritySettingsTests.BadSetting

    static let natsToken = "s3cr3t-nats-token"
    static let credentials = """
        -----BEGIN NATS USER JWT-----
        eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.fake
        ------END NATS USER JWT------

        -----BEGIN USER NKEY SEED-----
        SUAFAKESEED
        ------END USER NKEY SEED------

        """

    /// A folder with the TLS files of ``SecuritySettingsTests/Folder`` and a NATS token file and
    /// credentials file, removed afterwards.
    func withFolder(_ body: (Folder) throws -> Void) throws {
        let folder = try Folder()
        defer { folder.remove() }
        try folder.write("nats.token", "  \(Self.natsToken)\r\n\n")
        try folder.write("blank.token", " \n\t\n")
        try folder.write("two-words.token", "\(Self.natsToken) more\n")
        try folder.write("host.creds", Self.credentials)
        try body(folder)
    }

    @Test("no [cluster] section: no cluster, the host runs alone")
    func noSection() throws {
        let configuration = try RuntimeConfiguration.parse(text: "[log]\nlevel = info\n", path: "agentd.ini")
        #expect(configuration.cluster == nil)
        #expect(RuntimeConfiguration(path: "agentd.ini").cluster == nil)
    }

    @Test("[cluster] with nats alone: every other key keeps its default")
    func defaults() throws {
        let configuration = try RuntimeConfiguration.parse(text: "[cluster]\nnats = nats://127.0.0.1:4222", path: "agentd.ini")
        let cluster = try #require(configuration.cluster)
        #expect(cluster == ClusterSettings(nats: ["nats://127.0.0.1:4222"]))
        #expect(cluster.name == nil)
        #expect(cluster.lease == .seconds(3))
        #expect(cluster.lease == ClusterSettings.defaultLease)
        #expect(ClusterSettings.leaseRange == .seconds(1)...(.seconds(300)))
        #expect(cluster.tlsCA == nil && cluster.tlsCertificate == nil && cluster.tlsKey == nil)
        #expect(cluster.token == nil)
        #expect(cluster.credentialsFile == nil)
    }

    @Test("every key is read; paths are resolved against the INI file's folder and the files checked")
    func everyKey() throws {
        try withFolder { folder in
            let configuration = try folder.load("""
                [cluster]
                nats = nats://10.0.0.5:4222, tls://nats.example:4443 ,10.0.0.7:4222
                name = host-a.example:50051
                lease_seconds = 1.5
                tls_ca = tls/ca.pem
                tls_certificate = ./tls/client.pem
                tls_key = \(folder.path)/tls/client.key
                token_file = nats.token
                credentials = host.creds
                """)
            #expect(configuration.cluster == ClusterSettings(
                nats: ["nats://10.0.0.5:4222", "tls://nats.example:4443", "nats://10.0.0.7:4222"],
                name: "host-a.example:50051",
                lease: .milliseconds(1500),
                tlsCA: "\(folder.path)/tls/ca.pem",
                tlsCertificate: "\(folder.path)/tls/client.pem",
                tlsKey: "\(folder.path)/tls/client.key",
                token: Self.natsToken,
                credentialsFile: "\(folder.path)/host.creds"))
        }
    }

    @Test("relative paths are resolved against the folder of the INI file, wherever it is")
    func relativePaths() throws {
        try withFolder { folder in
            try FileManager.default.createDirectory(atPath: folder.path + "/conf", withIntermediateDirectories: true)
            try folder.write("conf/agentd.ini", """
                [cluster]
                nats = localhost:4222
                tls_ca = ../tls/ca.pem
                credentials = ../host.creds
                """)
            let cluster = try #require(try RuntimeConfiguration.load(path: folder.path + "/conf/agentd.ini").cluster)
            #expect(cluster.tlsCA == "\(folder.path)/conf/../tls/ca.pem")
            #expect(cluster.credentialsFile == "\(folder.path)/conf/../host.creds")
            #expect(FileManager.default.isReadableFile(atPath: cluster.tlsCA!))
        }
    }

    @Test("NATS servers: nats://, tls:// or a bare HOST:PORT (taken as nats://), IPv6 in brackets", arguments: [
        ("10.0.0.5:4222", ["nats://10.0.0.5:4222"]),
        ("NATS://a:1,TLS://b:2", ["nats://a:1", "tls://b:2"]),
        ("nats://[::1]:4222", ["nats://[::1]:4222"]),
        ("[fe80::1]:04222", ["nats://[fe80::1]:4222"]),
        ("\"a:1 , b:2\"", ["nats://a:1", "nats://b:2"]),
        ("\ta:1,\tb:2 ,c:3", ["nats://a:1", "nats://b:2", "nats://c:3"]),
    ])
    func servers(value: String, expected: [String]) throws {
        let configuration = try RuntimeConfiguration.parse(text: "[cluster]\nnats = \(value)", path: "agentd.ini")
        #expect(configuration.cluster?.nats == expected)
    }

    @Test("lease_seconds: whole or decimal seconds from 1 to 300", arguments: [
        ("1", Duration.seconds(1)),
        ("300", .seconds(300)),
        ("1.5", .milliseconds(1500)),
        ("299.999999999", .seconds(299) + .nanoseconds(999_999_999)),
        ("\"10\"", .seconds(10)),
    ])
    func leases(value: String, expected: Duration) throws {
        let configuration = try RuntimeConfiguration.parse(
            text: "[cluster]\nnats = a:1\nlease_seconds = \(value)", path: "agentd.ini")
        #expect(configuration.cluster?.lease == expected)
    }

    @Test("name: any one word of up to 128 characters, Unicode included", arguments: [
        "host-a", "10.0.0.5:50051", "ÿ-hôte-β", String(repeating: "n", count: 128), "\"quoted;name\"",
    ])
    func names(value: String) throws {
        let configuration = try RuntimeConfiguration.parse(text: "[cluster]\nnats = a:1\nname = \(value)", path: "agentd.ini")
        let expected = value.hasPrefix("\"") ? String(value.dropFirst().dropLast()) : value
        #expect(configuration.cluster?.name == expected)
    }

    @Test("an inline token is read as it is written")
    func inlineToken() throws {
        let configuration = try RuntimeConfiguration.parse(
            text: "[cluster]\nnats = a:1\ntoken = \"\(Self.natsToken)\"", path: "agentd.ini")
        #expect(configuration.cluster?.token == Self.natsToken)
    }

    static let badSettings: [BadSetting] = [
        BadSetting(
            text: "[cluster]\nname = host-a\nlease_seconds = 5", code: .missingKey, line: nil, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini: [cluster] nats: not set, but [cluster] is (line 1): give the NATS servers the cluster's hosts meet on, like nats = nats://10.0.0.5:4222, nats://10.0.0.6:4222"),
        BadSetting(
            text: "[cluster]", code: .missingKey, line: nil, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini: [cluster] nats: not set, but [cluster] is (line 1): give the NATS servers the cluster's hosts meet on, like nats = nats://10.0.0.5:4222, nats://10.0.0.6:4222"),
        BadSetting(
            text: "[cluster]\nnats =", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: is empty; give the NATS servers, like nats://10.0.0.5:4222, nats://10.0.0.6:4222"),
        BadSetting(
            text: "[cluster]\nnats = nats://a:4222,,nats://b:4222", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"nats://a:4222,,nats://b:4222\" has an empty entry; list servers as nats://HOST:PORT, nats://HOST:PORT"),
        BadSetting(
            text: "[cluster]\nnats = nats://a:4222,", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"nats://a:4222,\" has an empty entry; list servers as nats://HOST:PORT, nats://HOST:PORT"),
        BadSetting(
            text: "[cluster]\n\nnats = a:4222, nats://10.0.0.5:65536", code: .invalidValue, line: 3, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:3: [cluster] nats: \"nats://10.0.0.5:65536\" has no valid port: the port is a number from 1 to 65535"),
        BadSetting(
            text: "[cluster]\nnats = tls://a:x", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"tls://a:x\" has no valid port: the port is a number from 1 to 65535"),
        BadSetting(
            text: "[cluster]\nnats = a:0", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"a:0\": port 0 cannot be connected to; give the port the host listens on"),
        BadSetting(
            text: "[cluster]\nnats = nats://localhost", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"nats://localhost\" has no port; write nats://HOST:PORT, tls://HOST:PORT or HOST:PORT, like nats://10.0.0.5:4222"),
        BadSetting(
            text: "[cluster]\nnats = ws://a:4222", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"ws://a:4222\": the scheme must be nats:// or tls://; write nats://HOST:PORT, tls://HOST:PORT or HOST:PORT, like nats://10.0.0.5:4222"),
        BadSetting(
            text: "[cluster]\nnats = nats://user:hunter2@a:4222", code: .invalidValue, line: 2, section: "cluster", key: "nats",
            description: "FOLDER/agentd.ini:2: [cluster] nats: \"nats://…@a:4222\": a user or password does not go in the server's address; use token, token_file or credentials"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nname =", code: .invalidValue, line: 3, section: "cluster", key: "name",
            description: "FOLDER/agentd.ini:3: [cluster] name: is empty; remove the key to have the host use HOSTNAME:PORT"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nname = \(String(repeating: "n", count: 129))", code: .invalidValue, line: 3, section: "cluster",
            key: "name", description: "FOLDER/agentd.ini:3: [cluster] name: is 129 characters long; a host's name has at most 128"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nname = host a", code: .invalidValue, line: 3, section: "cluster", key: "name",
            description: "FOLDER/agentd.ini:3: [cluster] name: \"host a\" holds whitespace (character 5); a host's name is one word, such as host-a or 10.0.0.5:50051"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nname = \"host\\ta\"", code: .invalidValue, line: 3, section: "cluster", key: "name",
            description: "FOLDER/agentd.ini:3: [cluster] name: \"host\\ta\" holds a control character (character 5); a host's name is one word, such as host-a or 10.0.0.5:50051"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nname = \"host\u{00A0}a\"", code: .invalidValue, line: 3, section: "cluster", key: "name",
            description: "FOLDER/agentd.ini:3: [cluster] name: \"host\u{00A0}a\" holds whitespace (character 5); a host's name is one word, such as host-a or 10.0.0.5:50051"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nlease_seconds = 0", code: .invalidValue, line: 3, section: "cluster", key: "lease_seconds",
            description: "FOLDER/agentd.ini:3: [cluster] lease_seconds: \"0\" is out of range: the lease must be from 1 to 300 seconds"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nlease_seconds = 0.999", code: .invalidValue, line: 3, section: "cluster", key: "lease_seconds",
            description: "FOLDER/agentd.ini:3: [cluster] lease_seconds: \"0.999\" is out of range: the lease must be from 1 to 300 seconds"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nlease_seconds = 300.5", code: .invalidValue, line: 3, section: "cluster", key: "lease_seconds",
            description: "FOLDER/agentd.ini:3: [cluster] lease_seconds: \"300.5\" is out of range: the lease must be from 1 to 300 seconds"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nlease_seconds = 99999999999999999999999", code: .invalidValue, line: 3, section: "cluster",
            key: "lease_seconds",
            description: "FOLDER/agentd.ini:3: [cluster] lease_seconds: \"99999999999999999999999\" is out of range: the lease must be from 1 to 300 seconds"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nlease_seconds = 3s", code: .invalidValue, line: 3, section: "cluster", key: "lease_seconds",
            description: "FOLDER/agentd.ini:3: [cluster] lease_seconds: \"3s\" is not a number of seconds (write it like 60 or 0.5)"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntls_ca = nats/ca.pem", code: .fileUnreadable, line: 3, section: "cluster", key: "tls_ca",
            description: "FOLDER/agentd.ini:3: [cluster] tls_ca: cannot open FOLDER/nats/ca.pem: No such file or directory"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntls_ca = tls/client.key", code: .invalidValue, line: 3, section: "cluster", key: "tls_ca",
            description: "FOLDER/agentd.ini:3: [cluster] tls_ca: FOLDER/tls/client.key holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntls_certificate = tls/client.pem\ntls_key = tls/encrypted.key", code: .invalidValue, line: 4,
            section: "cluster", key: "tls_key",
            description: "FOLDER/agentd.ini:4: [cluster] tls_key: FOLDER/tls/encrypted.key holds an encrypted private key, which nats.c cannot use; write it unencrypted (openssl pkey -in KEY -out PLAIN) and make it readable by agentd's user only"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntls_certificate = tls/client.pem", code: .missingKey, line: nil, section: "cluster",
            key: "tls_key",
            description: "FOLDER/agentd.ini: [cluster] tls_key: not set, but tls_certificate is (line 3): TLS needs the certificate chain and its private key"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntls_key = tls/client.key", code: .missingKey, line: nil, section: "cluster",
            key: "tls_certificate",
            description: "FOLDER/agentd.ini: [cluster] tls_certificate: not set, but tls_key is (line 3): TLS needs the certificate chain and its private key"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken = \(natsToken)\ntoken_file = nats.token", code: .invalidValue, line: 4,
            section: "cluster", key: "token_file",
            description: "FOLDER/agentd.ini:4: [cluster] token_file: set together with token (line 3); give the token one way only"),
        BadSetting(
            text: "[cluster]\ntoken_file = nats.token\ntoken = \(natsToken)\nnats = a:1", code: .invalidValue, line: 3,
            section: "cluster", key: "token",
            description: "FOLDER/agentd.ini:3: [cluster] token: set together with token_file (line 2); give the token one way only"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken =", code: .invalidValue, line: 3, section: "cluster", key: "token",
            description: "FOLDER/agentd.ini:3: [cluster] token: is empty; remove the key to send no token"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken = \"two words\"", code: .invalidValue, line: 3, section: "cluster", key: "token",
            description: "FOLDER/agentd.ini:3: [cluster] token: the token holds whitespace or a control character (character 4); a NATS token is one word"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken_file =", code: .invalidValue, line: 3, section: "cluster", key: "token_file",
            description: "FOLDER/agentd.ini:3: [cluster] token_file: is empty; give the path of a file with the token (relative to the configuration file)"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken_file = blank.token", code: .invalidValue, line: 3, section: "cluster", key: "token_file",
            description: "FOLDER/agentd.ini:3: [cluster] token_file: FOLDER/blank.token holds no token (it is empty)"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken_file = two-words.token", code: .invalidValue, line: 3, section: "cluster",
            key: "token_file",
            description: "FOLDER/agentd.ini:3: [cluster] token_file: the token in FOLDER/two-words.token holds whitespace or a control character (character 18); a NATS token is one word"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ntoken_file = missing.token", code: .fileUnreadable, line: 3, section: "cluster",
            key: "token_file",
            description: "FOLDER/agentd.ini:3: [cluster] token_file: cannot open FOLDER/missing.token: No such file or directory"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ncredentials = tls", code: .fileUnreadable, line: 3, section: "cluster", key: "credentials",
            description: "FOLDER/agentd.ini:3: [cluster] credentials: FOLDER/tls is a folder, not a file"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ncredentials = missing.creds", code: .fileUnreadable, line: 3, section: "cluster",
            key: "credentials",
            description: "FOLDER/agentd.ini:3: [cluster] credentials: cannot open FOLDER/missing.creds: No such file or directory"),
        BadSetting(
            text: "[cluster]\nnats = a:1\ncredentials =", code: .invalidValue, line: 3, section: "cluster", key: "credentials",
            description: "FOLDER/agentd.ini:3: [cluster] credentials: is empty; give the path of a NATS credentials file (.creds) (relative to the configuration file)"),
        BadSetting(
            text: "[cluster]\nnats = a:1\nservers = b:2", code: .unknownKey, line: 3, section: "cluster", key: "servers",
            description: "FOLDER/agentd.ini:3: [cluster] servers: unknown key; the keys of [cluster] are nats, name, lease_seconds, tls_ca, tls_certificate, tls_key, token, token_file, credentials"),
        BadSetting(
            text: "[cluster]\nnat = a:1", code: .unknownKey, line: 2, section: "cluster", key: "nat",
            description: "FOLDER/agentd.ini:2: [cluster] nat: unknown key (did you mean nats?); the keys of [cluster] are nats, name, lease_seconds, tls_ca, tls_certificate, tls_key, token, token_file, credentials"),
    ]

    @Test("each bad [cluster] value is refused naming the file, line and key (and the path)", arguments: badSettings)
    func badSetting(_ bad: BadSetting) throws {
        try withFolder { folder in try SecuritySettingsTests.expectRefused(bad, in: folder) }
    }

    @Test("an unknown section close to [cluster] is refused with a suggestion")
    func misspeltSection() throws {
        let error = try #require(throws: ConfigurationError.self) {
            try RuntimeConfiguration.parse(text: "[clusters]\nnats = a:1", path: "agentd.ini")
        }
        #expect(error.code == .unknownSection)
        #expect(error.line == 1)
        #expect(error.description.hasPrefix("agentd.ini:1: unknown section [clusters] (did you mean [cluster]?)"))
    }

    @Test("the commented [cluster] example of Config/agentd.ini, uncommented, is valid")
    func exampleBlock() throws {
        let repository = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let example = try String(contentsOf: repository.appendingPathComponent("Config/agentd.ini"), encoding: .utf8)
        let lines = example.split(separator: "\n", omittingEmptySubsequences: false)
        let start = try #require(lines.firstIndex(of: "; [cluster]"))
        // `; key = value   what it means`: the value ends at the first run of two spaces.
        let block = lines[start...].prefix { !$0.isEmpty }.map { line in
            String(line.dropFirst(2)).components(separatedBy: "  ")[0]
        }
        #expect(block.count == 9, "the header and a line a key (token is given with token_file): \(block)")
        try withFolder { folder in
            try folder.write("tls/nats-ca.pem", SecuritySettingsTests.certificate)
            try folder.write("tls/nats.pem", SecuritySettingsTests.certificate)
            try folder.write("tls/nats.key", SecuritySettingsTests.key)
            let cluster = try #require(try folder.load(block.joined(separator: "\n")).cluster)
            #expect(cluster.nats == ["nats://10.0.0.5:4222", "tls://10.0.0.6:4222"])
            #expect(cluster.name == "host-a")
            #expect(cluster.lease == .seconds(3))
            #expect(cluster.tlsKey == "\(folder.path)/tls/nats.key")
            #expect(cluster.token == Self.natsToken)
            #expect(cluster.credentialsFile == "\(folder.path)/host.creds")
        }
    }

    @Test("errors about the token or the servers' addresses never show a token or password")
    func secretsNotShown() throws {
        try withFolder { folder in
            for text in [
                "[cluster]\nnats = a:1\ntoken_file = two-words.token",
                "[cluster]\nnats = a:1\ntoken = \"\(Self.natsToken) x\"",
                "[cluster]\nnats = tls://admin:\(Self.natsToken)@a:1",
            ] {
                let error = try #require(throws: ConfigurationError.self) { try folder.load(text) }
                #expect(!error.description.contains(Self.natsToken))
            }
        }
    }
}
