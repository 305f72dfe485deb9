/// Why a configuration file, or one of its settings, was refused.
///
/// Every error a user can meet names where it comes from: the file, the line (when there is
/// one), and the section and key (when one is involved). Its ``description`` reads like a
/// compiler diagnostic, so that editors and terminals can jump to the line:
///
/// ```
/// agentd.ini:12: [runtime] rpc_timeout: "abc" is not a number of seconds
/// ```
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// What kind of problem this is. New codes may be added; switch with a `default`.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: String, Hashable, Sendable {
            case fileUnreadable, fileTooLarge, invalidEncoding, controlCharacter
            case malformedLine, unterminatedQuote, invalidEscape, emptyKey, invalidKey
            case invalidSectionName, keyOutsideSection, duplicateKey, duplicateSection
            case unknownSection, unknownKey, invalidValue, missingKey
        }

        private let wrapped: Wrapped
        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The file could not be opened or read (it is missing, a folder, or not permitted).
        public static let fileUnreadable = Self(.fileUnreadable)
        /// The file is larger than ``IniDocument/maximumFileSize``.
        public static let fileTooLarge = Self(.fileTooLarge)
        /// A line is not valid UTF-8.
        public static let invalidEncoding = Self(.invalidEncoding)
        /// A line holds a NUL byte or another control character (other than tab).
        public static let controlCharacter = Self(.controlCharacter)
        /// A line is neither a `[section]` header, a `key = value` entry, a comment nor blank,
        /// or has text after a closing quote or `]`.
        public static let malformedLine = Self(.malformedLine)
        /// A double-quoted value has no closing quote on its line.
        public static let unterminatedQuote = Self(.unterminatedQuote)
        /// A double-quoted value uses an escape other than `\"`, `\\`, `\n` or `\t`.
        public static let invalidEscape = Self(.invalidEscape)
        /// A line starts with `=`: the key is missing.
        public static let emptyKey = Self(.emptyKey)
        /// A key holds characters other than letters, digits, `_`, `-` and `.`.
        public static let invalidKey = Self(.invalidKey)
        /// A section name is empty or holds characters other than letters, digits, `_`, `-`
        /// and `.` (or is `[plugin.]` without a plugin name).
        public static let invalidSectionName = Self(.invalidSectionName)
        /// A `key = value` line comes before any `[section]` header.
        public static let keyOutsideSection = Self(.keyOutsideSection)
        /// A key appears twice in one section.
        public static let duplicateKey = Self(.duplicateKey)
        /// A section header appears twice in the file.
        public static let duplicateSection = Self(.duplicateSection)
        /// A section the configuration does not know.
        public static let unknownSection = Self(.unknownSection)
        /// A key its section does not know.
        public static let unknownKey = Self(.unknownKey)
        /// A value that does not fit its key (not a number, out of range, not `HOST:PORT`, ...).
        public static let invalidValue = Self(.invalidValue)
        /// A key that is required for what is being done is absent.
        public static let missingKey = Self(.missingKey)

        public var description: String { wrapped.rawValue }
    }

    /// What kind of problem this is.
    public var code: Code
    /// What is wrong and, where it helps, what to write instead.
    public var message: String
    /// The configuration file, as it was named to ``IniDocument/load(path:)`` or `parse`;
    /// `nil` for settings that did not come from a file.
    public var path: String?
    /// The 1-based line the problem is on; `nil` when it concerns the whole file or a missing key.
    public var line: Int?
    /// The section involved, without brackets (`runtime`, `plugin.greeter`), if any.
    public var section: String?
    /// The key involved, if any.
    public var key: String?
    /// The error underneath, such as the system's reason a file could not be read.
    public var cause: (any Error & Sendable)?

    public init(
        _ code: Code, _ message: String, path: String? = nil, line: Int? = nil,
        section: String? = nil, key: String? = nil, cause: (any Error & Sendable)? = nil
    ) {
        self.code = code
        self.message = message
        self.path = path
        self.line = line
        self.section = section
        self.key = key
        self.cause = cause
    }

    /// `FILE:LINE: [SECTION] KEY: MESSAGE`, leaving out the parts the error does not have.
    public var description: String {
        var text = ""
        if let path {
            text += path
            if let line { text += ":\(line)" }
            text += ": "
        } else if let line {
            text += "line \(line): "
        }
        if let key {
            if let section { text += "[\(section)] " }
            text += "\(key): "
        }
        text += message
        return text
    }
}

extension ConfigurationError {
    /// An error about one entry's value, located at the entry.
    static func invalidValue(_ entry: IniEntry, _ message: String) -> ConfigurationError {
        ConfigurationError(
            .invalidValue, message, path: entry.path, line: entry.line, section: entry.section,
            key: entry.key)
    }
}
