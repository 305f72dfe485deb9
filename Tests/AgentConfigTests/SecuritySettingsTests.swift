import AgentConfig
import Foundation
import Testing

/// TLS files, tokens and queue bounds: `[host]` and `[runtime]` keys that name files or bound
/// queues.
@Suite("RuntimeConfiguration: TLS, tokens and bounds")
struct SecuritySettingsTests {
    static let certificate = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
    static let key = "-----BEGIN PRIVATE KEY-----\nMIGHfake\n-----END PRIVATE KEY-----\n"
    static let encryptedKey = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIHsfake\n-----END ENCRYPTED PRIVATE KEY-----\n"
    static let hostTokens = "# the workers' tokens\n\n  worker-token-0123456789  \r\nsecond-token-abcdefghij\n"
    static let runtimeToken = "# ours\nruntime-token-0123456789\n"

    /// A folder with an INI file and the files it names, removed afterwards.
    struct Folder {
        let path: String

        init() throws {
            path = NSTemporaryDirectory() + "agentconfig-tls-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path + "/tls", withIntermediateDirectories: true)
            try write("tls/ca.pem", SecuritySettingsTests.certificate)
            try write("tls/server.pem", SecuritySettingsTests.certificate)
            try write("tls/server.key", SecuritySettingsTests.key)
            try write("tls/client.pem", SecuritySettingsTests.certificate)
            try write("tls/client.key", SecuritySettingsTests.key)
            try write("tls/encrypted.key", SecuritySettingsTests.encryptedKey)
            try write("tokens", SecuritySettingsTests.hostTokens)
            try write("runtime.token", SecuritySettingsTests.runtimeToken)
            try write("empty.tokens", "# nothing yet\n\n")
        }

        func write(_ name: String, _ text: String) throws {
            try Data(text.utf8).write(to: URL(fileURLWithPath: "\(path)/\(name)"))
        }

        /// Writes `text` as agentd.ini and loads it.
        func load(_ text: String) throws(ConfigurationError) -> RuntimeConfiguration {
            try? write("agentd.ini", text)
            return try RuntimeConfiguration.load(path: "\(path)/agentd.ini")
        }

        func remove() { try? FileManager.default.removeItem(atPath: path) }
    }

    func withFolder(_ body: (Folder) throws -> Void) throws {
        let folder = try Folder()
        defer { folder.remove() }
        try body(folder)
    }

    @Test("defaults: plaintext, no tokens, the host's and runtime's own bounds")
    func defaults() throws {
        let configuration = try RuntimeConfiguration.parse(text: "", path: "agentd.ini")
        #expect(configuration.host.tlsCertificate == nil)
        #expect(configuration.host.tlsKey == nil)
        #expect(configuration.host.tlsClientCA == nil)
        #expect(configuration.host.authTokens.isEmpty)
        #expect(configuration.host.queueLimitMessages == 100_000)
        #expect(configuration.host.queueLimitBytes == 256 * 1024 * 1024)
        #expect(configuration.tlsCA == nil)
        #expect(configuration.tlsCertificate == nil)
        #expect(configuration.tlsKey == nil)
        #expect(!configuration.connectsWithTLS)
        #expect(configuration.authToken == nil)
        #expect(configuration.publishBuffer == 10_000)
        #expect(configuration.mailboxLimit == 10_000)
        #expect(configuration.handlerTimeout == .seconds(60))
        try configuration.checkEmbeddedHostConnection()
    }

    @Test("every new key is read; paths are resolved against the INI file's folder and the files read")
    func everyKey() throws {
        try withFolder { folder in
            let configuration = try folder.load("""
                [runtime]
                tls_ca = tls/ca.pem
                tls_certificate = ./tls/client.pem
                tls_key = tls/client.key
                auth_token_file = runtime.token
                publish_buffer = 0
                mailbox_limit = 250
                handler_timeout = 2.5

                [host]
                tls_certificate = tls/server.pem
                tls_key = \(folder.path)/tls/server.key
                tls_client_ca = tls/ca.pem
                auth_tokens_file = tokens
                queue_limit_messages = 5000
                queue_limit_bytes = 64 MiB
                outbound_budget_bytes = 96 MiB
                """)
            let tls = folder.path + "/tls"
            #expect(configuration.tlsCA == PEMFile(path: "\(tls)/ca.pem", contents: Self.certificate, line: 2))
            #expect(configuration.tlsCertificate?.path == "\(tls)/client.pem")
            #expect(configuration.tlsKey == PEMFile(path: "\(tls)/client.key", contents: Self.key, line: 4))
            #expect(configuration.connectsWithTLS)
            #expect(configuration.authToken == "runtime-token-0123456789")
            #expect(configuration.publishBuffer == 0)
            #expect(configuration.mailboxLimit == 250)
            #expect(configuration.handlerTimeout == .milliseconds(2500))
            #expect(configuration.host.tlsCertificate == PEMFile(path: "\(tls)/server.pem", contents: Self.certificate, line: 11))
            #expect(configuration.host.tlsKey?.path == "\(tls)/server.key")
            #expect(configuration.host.tlsKey?.contents == Self.key)
            #expect(configuration.host.tlsClientCA?.path == "\(tls)/ca.pem")
            #expect(configuration.host.authTokens == ["worker-token-0123456789", "second-token-abcdefghij"])
            #expect(configuration.host.queueLimitMessages == 5000)
            #expect(configuration.host.queueLimitBytes == 64 * 1024 * 1024)
            #expect(configuration.host.outboundBudgetBytes == 96 * 1024 * 1024)
            #expect(HostSettings().outboundBudgetBytes == 512 * 1024 * 1024)
            try configuration.checkEmbeddedHostConnection()
            // A PEM file shows as its path, never its contents.
            #expect("\(configuration.tlsKey!)" == "\(tls)/client.key")
        }
    }

    @Test("tokens can be written inline, separated by commas; a client's token too")
    func inlineTokens() throws {
        let configuration = try RuntimeConfiguration.parse(text: """
            [runtime]
            auth_token = "runtime-token-0123456789"
            [host]
            auth_tokens = worker-token-0123456789 ,second-token-abcdefghij,  Zm9vYmFyYmF6cXV4Lw==
            """, path: "agentd.ini")
        #expect(configuration.authToken == "runtime-token-0123456789")
        #expect(configuration.host.authTokens == ["worker-token-0123456789", "second-token-abcdefghij", "Zm9vYmFyYmF6cXV4Lw=="])
    }

    /// A setting to refuse, the error's code, line and key, and its description (`FOLDER`
    /// stands for the test folder).
    struct BadSetting: CustomTestStringConvertible, Sendable {
        var text: String
        var code: ConfigurationError.Code
        var line: Int?
        var section: String
        var key: String
        var description: String
        var testDescription: String { text.split(separator: "\n").last.map(String.init) ?? text }
    }

    static let badSettings: [BadSetting] = [
        BadSetting(
            text: "[host]\ntls_certificate = missing.pem\ntls_key = tls/server.key", code: .fileUnreadable, line: 2,
            section: "host", key: "tls_certificate",
            description: "FOLDER/agentd.ini:2: [host] tls_certificate: cannot open FOLDER/missing.pem: No such file or directory"),
        BadSetting(
            text: "[runtime]\ntls_ca = tls", code: .fileUnreadable, line: 2, section: "runtime", key: "tls_ca",
            description: "FOLDER/agentd.ini:2: [runtime] tls_ca: FOLDER/tls is a folder, not a file"),
        BadSetting(
            text: "[host]\nauth_tokens_file = /dev/zero", code: .fileUnreadable, line: 2, section: "host", key: "auth_tokens_file",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens_file: /dev/zero is a device, not a file"),
        BadSetting(
            text: "[runtime]\ntls_ca = tls/server.key", code: .invalidValue, line: 2, section: "runtime", key: "tls_ca",
            description: "FOLDER/agentd.ini:2: [runtime] tls_ca: FOLDER/tls/server.key holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)"),
        BadSetting(
            text: "[host]\ntls_certificate = tls/server.pem\ntls_key = tls/server.pem", code: .invalidValue, line: 3,
            section: "host", key: "tls_key",
            description: "FOLDER/agentd.ini:3: [host] tls_key: FOLDER/tls/server.pem holds no PEM private key (a -----BEGIN PRIVATE KEY----- block)"),
        BadSetting(
            text: "[host]\ntls_certificate = tls/server.pem\ntls_key = tls/encrypted.key", code: .invalidValue, line: 3,
            section: "host", key: "tls_key",
            description: "FOLDER/agentd.ini:3: [host] tls_key: FOLDER/tls/encrypted.key holds an encrypted private key, which gRPC cannot use; write it unencrypted (openssl pkey -in KEY -out PLAIN) and make it readable by agentd's user only"),
        BadSetting(
            text: "[host]\ntls_certificate =", code: .invalidValue, line: 2, section: "host", key: "tls_certificate",
            description: "FOLDER/agentd.ini:2: [host] tls_certificate: is empty; give the path of a PEM file (relative to the configuration file)"),
        BadSetting(
            text: "[host]\n\ntls_certificate = tls/server.pem", code: .missingKey, line: nil, section: "host", key: "tls_key",
            description: "FOLDER/agentd.ini: [host] tls_key: not set, but tls_certificate is (line 3): TLS needs the certificate chain and its private key"),
        BadSetting(
            text: "[runtime]\ntls_key = tls/client.key", code: .missingKey, line: nil, section: "runtime", key: "tls_certificate",
            description: "FOLDER/agentd.ini: [runtime] tls_certificate: not set, but tls_key is (line 2): TLS needs the certificate chain and its private key"),
        BadSetting(
            text: "[host]\ntls_client_ca = tls/ca.pem", code: .invalidValue, line: 2, section: "host", key: "tls_client_ca",
            description: "FOLDER/agentd.ini:2: [host] tls_client_ca: mutual TLS needs the host to listen with TLS: set tls_certificate and tls_key in [host] too"),
        BadSetting(
            text: "[host]\nqueue_limit_messages = -5", code: .invalidValue, line: 2, section: "host", key: "queue_limit_messages",
            description: "FOLDER/agentd.ini:2: [host] queue_limit_messages: \"-5\" is not a whole number of messages (1 to 100000000)"),
        BadSetting(
            text: "[host]\nqueue_limit_messages = 0", code: .invalidValue, line: 2, section: "host", key: "queue_limit_messages",
            description: "FOLDER/agentd.ini:2: [host] queue_limit_messages: \"0\" is out of range: the number of messages must be from 1 to 100000000"),
        BadSetting(
            text: "[host]\nqueue_limit_bytes = -1", code: .invalidValue, line: 2, section: "host", key: "queue_limit_bytes",
            description: "FOLDER/agentd.ini:2: [host] queue_limit_bytes: \"-1\" is not a number of bytes: write a whole number, optionally followed by KiB or MiB (1024-based), like 4194304 or 4 MiB"),
        BadSetting(
            text: "[host]\nqueue_limit_bytes = 65537 MiB", code: .invalidValue, line: 2, section: "host", key: "queue_limit_bytes",
            description: "FOLDER/agentd.ini:2: [host] queue_limit_bytes: \"65537 MiB\" is too large; the most is 68719476736 bytes (64 GiB)"),
        BadSetting(
            text: "[runtime]\npublish_buffer = -1", code: .invalidValue, line: 2, section: "runtime", key: "publish_buffer",
            description: "FOLDER/agentd.ini:2: [runtime] publish_buffer: \"-1\" is not a whole number of buffered publishes (0 to 10000000)"),
        BadSetting(
            text: "[runtime]\nmailbox_limit = 0", code: .invalidValue, line: 2, section: "runtime", key: "mailbox_limit",
            description: "FOLDER/agentd.ini:2: [runtime] mailbox_limit: \"0\" is out of range: the number of messages must be from 1 to 10000000"),
        BadSetting(
            text: "[runtime]\nhandler_timeout = -3", code: .invalidValue, line: 2, section: "runtime", key: "handler_timeout",
            description: "FOLDER/agentd.ini:2: [runtime] handler_timeout: \"-3\" is not a number of seconds (write it like 60 or 0.5)"),
        BadSetting(
            text: "[runtime]\nhandler_timeout = 0", code: .invalidValue, line: 2, section: "runtime", key: "handler_timeout",
            description: "FOLDER/agentd.ini:2: [runtime] handler_timeout: \"0\" is not a positive number of seconds; the least is 0.001"),
        BadSetting(
            text: "[host]\nauth_tokens = short-secret", code: .invalidValue, line: 2, section: "host", key: "auth_tokens",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens: the token is 12 characters long; a token needs at least 16 (make one with: openssl rand -hex 32)"),
        BadSetting(
            text: "[host]\nauth_tokens = worker-token-0123456789, \"has a space 0123456789\"", code: .invalidValue, line: 2,
            section: "host", key: "auth_tokens",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens: token 2 of 2 holds a character a token may not; use letters, digits and - . _ ~ + / = (make one with: openssl rand -hex 32)"),
        BadSetting(
            text: "[host]\nauth_tokens = worker-token-0123456789,,second-token-abcdefghij", code: .invalidValue, line: 2,
            section: "host", key: "auth_tokens",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens: token 2 of 3 is empty; separate tokens with single commas"),
        BadSetting(
            text: "[host]\nauth_tokens =", code: .invalidValue, line: 2, section: "host", key: "auth_tokens",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens: is empty; give one or more tokens separated by commas, or remove the key to admit every caller"),
        BadSetting(
            text: "[host]\nauth_tokens = worker-token-0123456789\nauth_tokens_file = tokens", code: .invalidValue, line: 3,
            section: "host", key: "auth_tokens_file",
            description: "FOLDER/agentd.ini:3: [host] auth_tokens_file: set together with auth_tokens (line 2); give the tokens one way only"),
        BadSetting(
            text: "[host]\nauth_tokens_file = empty.tokens", code: .invalidValue, line: 2, section: "host", key: "auth_tokens_file",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens_file: FOLDER/empty.tokens holds no token (one a line; lines starting with # are comments)"),
        BadSetting(
            text: "[host]\nauth_tokens_file = no-such-file", code: .fileUnreadable, line: 2, section: "host", key: "auth_tokens_file",
            description: "FOLDER/agentd.ini:2: [host] auth_tokens_file: cannot open FOLDER/no-such-file: No such file or directory"),
        BadSetting(
            text: "[runtime]\nauth_token_file = tokens", code: .invalidValue, line: 2, section: "runtime", key: "auth_token_file",
            description: "FOLDER/agentd.ini:2: [runtime] auth_token_file: FOLDER/tokens holds 2 tokens; a client's token file holds one"),
        BadSetting(
            text: "[runtime]\nauth_token_file = runtime.token\nauth_token = runtime-token-0123456789", code: .invalidValue, line: 3,
            section: "runtime", key: "auth_token",
            description: "FOLDER/agentd.ini:3: [runtime] auth_token: set together with auth_token_file (line 2); give the token one way only"),
        BadSetting(
            text: "[runtime]\nauth_token =", code: .invalidValue, line: 2, section: "runtime", key: "auth_token",
            description: "FOLDER/agentd.ini:2: [runtime] auth_token: is empty; remove the key to send no token"),
    ]

    @Test("each bad file, token or bound is refused naming the file, line and key (and the path)", arguments: badSettings)
    func badSetting(_ bad: BadSetting) throws {
        try withFolder { folder in try Self.expectRefused(bad, in: folder) }
    }

    /// Loads `bad.text` as `folder`'s agentd.ini and checks the error against `bad`.
    static func expectRefused(_ bad: BadSetting, in folder: Folder) throws {
        let error = try #require(throws: ConfigurationError.self) { try folder.load(bad.text) }
        #expect(error.code == bad.code)
        #expect(error.path == "\(folder.path)/agentd.ini")
        #expect(error.line == bad.line)
        #expect(error.section == bad.section)
        #expect(error.key == bad.key)
        #expect(error.description == bad.description.replacingOccurrences(of: "FOLDER", with: folder.path))
    }

    @Test("an error about a token file never shows a token")
    func tokenNotShown() throws {
        try withFolder { folder in
            try folder.write("bad.tokens", "worker-token-0123456789\nshort-secret\n")
            let error = try #require(throws: ConfigurationError.self) {
                try folder.load("[host]\nauth_tokens_file = bad.tokens")
            }
            #expect(error.description == "\(folder.path)/agentd.ini:2: [host] auth_tokens_file: the token on line 2 of \(folder.path)/bad.tokens is 12 characters long; a token needs at least 16 (make one with: openssl rand -hex 32)")
            #expect(!error.description.contains("short-secret"))
            #expect(!error.description.contains("worker-token"))
        }
    }

    @Test("the runtime must be able to reach its embedded host: TLS with TLS, a certificate for mutual TLS")
    func embeddedHostConnection() throws {
        try withFolder { folder in
            let tlsHost = "[host]\ntls_certificate = tls/server.pem\ntls_key = tls/server.key\n"
            let noCA = try #require(throws: ConfigurationError.self) { try folder.load(tlsHost).checkEmbeddedHostConnection() }
            #expect(noCA.code == .missingKey)
            #expect(noCA.section == "runtime")
            #expect(noCA.key == "tls_ca")
            #expect(noCA.description.hasPrefix("\(folder.path)/agentd.ini: [runtime] tls_ca: not set, but the embedded host listens with TLS ([host] tls_certificate, line 2)"))

            let mutual = tlsHost + "tls_client_ca = tls/ca.pem\n[runtime]\ntls_ca = tls/ca.pem\n"
            let noCertificate = try #require(throws: ConfigurationError.self) { try folder.load(mutual).checkEmbeddedHostConnection() }
            #expect(noCertificate.key == "tls_certificate")
            #expect(noCertificate.description.hasPrefix("\(folder.path)/agentd.ini: [runtime] tls_certificate: not set, but the embedded host requires client certificates ([host] tls_client_ca, line 4)"))
            try folder.load(mutual + "tls_certificate = tls/client.pem\ntls_key = tls/client.key\n").checkEmbeddedHostConnection()

            let plaintextHost = try #require(throws: ConfigurationError.self) {
                try folder.load("[runtime]\n\ntls_ca = tls/ca.pem\n").checkEmbeddedHostConnection()
            }
            #expect(plaintextHost.code == .invalidValue)
            #expect(plaintextHost.line == 3)
            #expect(plaintextHost.key == "tls_ca")
        }
    }
}
