#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reading the files keys name (PEM certificates and keys, token files), with errors located
/// at the key and naming the file.
extension RuntimeConfiguration {
    /// What a PEM file must hold.
    enum PEMContent {
        case certificate
        case privateKey
    }

    /// The largest token file accepted: 1 MiB.
    static let maximumTokenFileSize = 1 << 20

    /// Reads the PEM file `entry` names (relative to the configuration file's folder) and
    /// checks that it holds what the key needs.
    /// - Parameter library: what reads the key, named in the message about an encrypted one.
    static func pemFile(
        _ entry: IniEntry, holding content: PEMContent, usedBy library: String = "gRPC"
    ) throws(ConfigurationError) -> PEMFile {
        guard !entry.value.isEmpty else {
            throw .invalidValue(entry, "is empty; give the path of a PEM file (relative to the configuration file)")
        }
        let path = resolve(entry.value, relativeToFolderOf: entry.path)
        let text = try textOfFile(path, for: entry, limit: PEMFile.maximumFileSize)
        switch content {
        case .certificate:
            guard text.contains("-----BEGIN CERTIFICATE-----") else {
                throw .invalidValue(entry, "\(path) holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)")
            }
        case .privateKey:
            if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED") {
                throw .invalidValue(
                    entry,
                    "\(path) holds an encrypted private key, which \(library) cannot use; write it unencrypted (openssl pkey -in KEY -out PLAIN) and make it readable by agentd's user only")
            }
            guard text.contains("-----BEGIN "), text.contains("PRIVATE KEY-----") else {
                throw .invalidValue(entry, "\(path) holds no PEM private key (a -----BEGIN PRIVATE KEY----- block)")
            }
        }
        return PEMFile(path: path, contents: text, line: entry.line)
    }

    /// The tokens of the file `entry` names: one a line; blank lines and lines starting with
    /// `#` are skipped, surrounding whitespace is trimmed. Errors never show a token.
    /// - Parameter single: the file must hold exactly one token (a client's token file).
    static func tokenFile(_ entry: IniEntry, single: Bool) throws(ConfigurationError) -> [String] {
        guard !entry.value.isEmpty else {
            throw .invalidValue(entry, "is empty; give the path of a file with \(single ? "the token" : "one token a line")")
        }
        let path = resolve(entry.value, relativeToFolderOf: entry.path)
        let text = try textOfFile(path, for: entry, limit: maximumTokenFileSize)
        var tokens: [String] = []
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
        for (index, line) in lines.enumerated() {
            let token = trimmed(line)
            if token.isEmpty || token.hasPrefix("#") { continue }
            do throws(SettingValueError) {
                tokens.append(try SettingValue.token(token, what: "the token on line \(index + 1) of \(path)"))
            } catch {
                throw .invalidValue(entry, error.message)
            }
        }
        guard !tokens.isEmpty else {
            throw .invalidValue(entry, "\(path) holds no token (one a line; lines starting with # are comments)")
        }
        guard !single || tokens.count == 1 else {
            throw .invalidValue(entry, "\(path) holds \(tokens.count) tokens; a client's token file holds one")
        }
        return tokens
    }

    /// The token of the NATS token file `entry` names: the whole file, surrounding whitespace
    /// and line breaks trimmed. Errors never show the token.
    static func natsTokenFile(_ entry: IniEntry) throws(ConfigurationError) -> String {
        let path = try nonEmptyPath(entry, of: "a file with the token")
        let text = try textOfFile(path, for: entry, limit: maximumTokenFileSize)
        let token = text.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed()
        guard !token.isEmpty else {
            throw .invalidValue(entry, "\(path) holds no token (it is empty)")
        }
        do throws(SettingValueError) {
            return try SettingValue.natsToken(String(token), what: "the token in \(path)")
        } catch {
            throw .invalidValue(entry, error.message)
        }
    }

    /// The path of the file `entry` names, resolved against the configuration file's folder,
    /// once it is found to be a readable file of UTF-8 text of at most 1 MiB: for a file that
    /// another library reads itself.
    /// - Parameter what: what the file is, for the message about an empty value.
    static func readableFile(_ entry: IniEntry, holding what: String) throws(ConfigurationError) -> String {
        let path = try nonEmptyPath(entry, of: what)
        _ = try textOfFile(path, for: entry, limit: maximumTokenFileSize)
        return path
    }

    /// The path `entry` names, resolved against the configuration file's folder.
    private static func nonEmptyPath(_ entry: IniEntry, of what: String) throws(ConfigurationError) -> String {
        guard !entry.value.isEmpty else {
            throw .invalidValue(entry, "is empty; give the path of \(what) (relative to the configuration file)")
        }
        return resolve(entry.value, relativeToFolderOf: entry.path)
    }

    /// The tokens of an inline, comma-separated list (`auth_tokens = A, B`).
    static func tokenList(_ entry: IniEntry) throws(ConfigurationError) -> [String] {
        let items = entry.value.split(separator: ",", omittingEmptySubsequences: false)
        var tokens: [String] = []
        for (index, item) in items.enumerated() {
            let token = trimmed(item)
            guard !token.isEmpty else {
                throw .invalidValue(
                    entry,
                    items.count == 1
                        ? "is empty; give one or more tokens separated by commas, or remove the key to admit every caller"
                        : "token \(index + 1) of \(items.count) is empty; separate tokens with single commas")
            }
            do throws(SettingValueError) {
                tokens.append(try SettingValue.token(token, what: items.count == 1 ? "the token" : "token \(index + 1) of \(items.count)"))
            } catch {
                throw .invalidValue(entry, error.message)
            }
        }
        return tokens
    }

    /// The UTF-8 text of the file at `path`, which `entry` names.
    private static func textOfFile(_ path: String, for entry: IniEntry, limit: Int) throws(ConfigurationError) -> String {
        let bytes: [UInt8]
        do throws(BoundedFileReader.Failure) {
            bytes = try BoundedFileReader.readWhole(path, limit: limit, regularFileOnly: true)
        } catch {
            switch error {
            case .system(let error):
                throw ConfigurationError(
                    .fileUnreadable, "cannot \(error.call) \(path): \(String(cString: strerror(error.number)))",
                    path: entry.path, line: entry.line, section: entry.section, key: entry.key, cause: error)
            case .tooLarge:
                throw ConfigurationError(
                    .fileTooLarge, "\(path) is larger than \(limit) bytes, the most this file may be",
                    path: entry.path, line: entry.line, section: entry.section, key: entry.key)
            case .notRegularFile(let kind):
                throw ConfigurationError(
                    .fileUnreadable, "\(path) is \(kind), not a file",
                    path: entry.path, line: entry.line, section: entry.section, key: entry.key)
            }
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw .invalidValue(entry, "\(path) is not UTF-8 text")
        }
        return text
    }
}

/// `text` without leading and trailing spaces and tabs.
private func trimmed(_ text: Substring) -> Substring {
    var text = text
    while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
    while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
    return text
}
