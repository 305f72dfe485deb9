import Foundation

/// A throwaway public-key infrastructure for TLS tests, made with the `openssl` command (the
/// Debian package `openssl`, which scripts/bootstrap installs) into a fresh temporary folder
/// once per test process:
///
/// - a certificate authority (`ca`);
/// - a server certificate it signed for `127.0.0.1` and `localhost` (`server`);
/// - a client certificate it signed (`client`), and another one for another identity
///   (`otherClient`);
/// - a second, unrelated authority and a client certificate it signed (`strangerClient`), for
///   a server that must refuse it.
///
/// EC P-256 keys, valid for two days. The folder is left for the system to clean; nothing in
/// it protects anything.
public struct TestCertificates: Sendable {
    /// A certificate and its private key, as PEM text and as the files holding it.
    public struct Identity: Sendable {
        public var certificate: String
        public var privateKey: String
        public var certificatePath: String
        public var privateKeyPath: String
    }

    /// Why the certificates could not be made.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let directory: String
    /// The authority's certificate (PEM) and its file.
    public let ca: String
    public let caPath: String
    public let server: Identity
    public let client: Identity
    /// A second client certificate the authority signed, with another common name.
    public let otherClient: Identity
    /// A client certificate signed by another authority.
    public let strangerClient: Identity

    /// The certificates of this test process, made on first use.
    public static func shared() throws -> TestCertificates {
        try made.get()
    }

    private static let made: Result<TestCertificates, Failure> = Result { () throws(Failure) in
        try TestCertificates.make()
    }

    private static func make() throws(Failure) -> TestCertificates {
        guard let openssl = ["/usr/bin/openssl", "/bin/openssl", "/usr/local/bin/openssl"]
            .first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            throw Failure(description: "the openssl command is not installed (Debian package openssl; run scripts/bootstrap)")
        }
        let directory = NSTemporaryDirectory() + "agentd-tls-\(UUID().uuidString)"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(extensions.utf8).write(to: URL(fileURLWithPath: "\(directory)/x509.cnf"))
        } catch {
            throw Failure(description: "cannot write \(directory): \(error)")
        }
        func run(_ arguments: [String]) throws(Failure) {
            // posix_spawn rather than Foundation's Process, whose run() leaks a weak reference
            // that LeakSanitizer reports in the AddressSanitizer runs of scripts/test.
            let log = "\(directory)/openssl.log"
            let argv: [UnsafeMutablePointer<CChar>?] = ([openssl] + arguments).map { strdup($0) } + [nil]
            defer { for pointer in argv { free(pointer) } }
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            var pid: pid_t = 0
            let command = "openssl \(arguments.joined(separator: " "))"
            let spawned = posix_spawn(&pid, openssl, &actions, nil, argv, environ)
            guard spawned == 0 else {
                throw Failure(description: "cannot run \(command): \(String(cString: strerror(spawned)))")
            }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            guard status == 0 else {
                let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                throw Failure(description: "\(command) failed (wait status \(status)): \(output)")
            }
        }
        let newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        let config = "\(directory)/x509.cnf"
        func file(_ name: String) -> String { "\(directory)/\(name)" }
        func authority(_ name: String) throws(Failure) {
            try run(["req", "-x509", "-config", config, "-extensions", "authority", "-days", "2",
                     "-subj", "/CN=agentd test \(name)", "-keyout", file("\(name).key"), "-out", file("\(name).pem")]
                    + newKey)
        }
        func identity(_ name: String, signedBy authority: String, extensions: String, serial: Int) throws(Failure) {
            try run(["req", "-new", "-config", config, "-subj", "/CN=agentd test \(name)",
                     "-keyout", file("\(name).key"), "-out", file("\(name).csr")] + newKey)
            try run(["x509", "-req", "-in", file("\(name).csr"), "-CA", file("\(authority).pem"),
                     "-CAkey", file("\(authority).key"), "-set_serial", "\(serial)", "-days", "2",
                     "-extfile", config, "-extensions", extensions, "-out", file("\(name).pem")])
        }
        try authority("ca")
        try authority("stranger-ca")
        try identity("server", signedBy: "ca", extensions: "server", serial: 1)
        try identity("client", signedBy: "ca", extensions: "client", serial: 2)
        try identity("other-client", signedBy: "ca", extensions: "client", serial: 4)
        try identity("stranger-client", signedBy: "stranger-ca", extensions: "client", serial: 3)
        func read(_ file: String) throws(Failure) -> String {
            do {
                return try String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8)
            } catch {
                throw Failure(description: "cannot read \(directory)/\(file): \(error)")
            }
        }
        func identity(_ name: String) throws(Failure) -> Identity {
            Identity(
                certificate: try read("\(name).pem"), privateKey: try read("\(name).key"),
                certificatePath: "\(directory)/\(name).pem", privateKeyPath: "\(directory)/\(name).key")
        }
        return TestCertificates(
            directory: directory, ca: try read("ca.pem"), caPath: "\(directory)/ca.pem",
            server: try identity("server"), client: try identity("client"), otherClient: try identity("other-client"),
            strangerClient: try identity("stranger-client"))
    }

    /// The extensions of each kind of certificate.
    private static let extensions = """
        [req]
        distinguished_name = name
        prompt = no

        [name]
        CN = agentd test

        [authority]
        basicConstraints = critical, CA:TRUE
        keyUsage = critical, keyCertSign, cRLSign
        subjectKeyIdentifier = hash

        [server]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = serverAuth
        subjectAltName = IP:127.0.0.1, DNS:localhost

        [client]
        basicConstraints = CA:FALSE
        keyUsage = critical, digitalSignature
        extendedKeyUsage = clientAuth

        """
}
