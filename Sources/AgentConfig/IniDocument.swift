/// An INI file, parsed but not yet checked against any schema: its sections and their entries
/// in file order, each remembering its file and line.
///
/// The syntax:
///
/// ```ini
/// ; A full-line comment starts with ';' or '#'.
/// [runtime]                       ; a section header; names may contain dots: [plugin.echo]
/// rpc_timeout = 30                ; key = value, whitespace around both trimmed
/// client_id = worker-1 # note     ; an inline comment starts at ';' or '#' after whitespace
/// greeting = "Hello; \"world\""   ; in double quotes ';' and '#' are literal;
///                                 ; escapes: \"  \\  \n  \t
/// ```
///
/// Section names and keys are case-sensitive and may contain letters, digits, `_`, `-` and
/// `.`. A key may not appear twice in a section, nor a section twice in a file. A value may be
/// empty (`key =`). Lines end with LF or CRLF; a leading UTF-8 byte order mark is skipped.
///
/// The parser is written for hostile input: it refuses files over ``maximumFileSize``, bytes
/// that are not UTF-8, NUL bytes and other control characters, and it never traps.
public struct IniDocument: Sendable, Hashable {
    /// The largest file accepted: 1 MiB.
    public static let maximumFileSize = 1 << 20

    /// The file the document was read from, as it was named.
    public var path: String
    /// The sections in file order; no name appears twice.
    public var sections: [IniSection]

    public init(path: String, sections: [IniSection] = []) {
        self.path = path
        self.sections = sections
    }

    /// The section called `name`, if the file has one.
    public subscript(section name: String) -> IniSection? {
        sections.first { $0.name == name }
    }

    /// Parses the bytes of an INI file.
    ///
    /// This is the entry point for fuzzing: it accepts any bytes, and either returns a
    /// document or throws.
    ///
    /// - Parameters:
    ///   - bytes: The file's contents.
    ///   - path: The file's name, used in the entries and in errors.
    /// - Throws: ``ConfigurationError`` naming the line (and key, where there is one) of the
    ///   first problem.
    public static func parse(bytes: [UInt8], path: String) throws(ConfigurationError) -> IniDocument {
        var parser = IniParser(path: path)
        try parser.parse(bytes)
        return parser.document
    }

    /// Parses the text of an INI file.
    /// - Parameters:
    ///   - text: The file's contents.
    ///   - path: The file's name, used in the entries and in errors.
    /// - Throws: ``ConfigurationError`` naming the line (and key, where there is one) of the
    ///   first problem.
    public static func parse(text: String, path: String) throws(ConfigurationError) -> IniDocument {
        try parse(bytes: Array(text.utf8), path: path)
    }

    /// Reads and parses an INI file, reading at most ``maximumFileSize`` bytes of it.
    /// - Parameter path: The file, absolute or relative to the current directory.
    /// - Throws: ``ConfigurationError`` if the file cannot be read (``ConfigurationError/Code/fileUnreadable``,
    ///   with the system's reason), is too large, or does not parse.
    public static func load(path: String) throws(ConfigurationError) -> IniDocument {
        let bytes = try BoundedFileReader.contents(ofFile: path, limit: maximumFileSize)
        return try parse(bytes: bytes, path: path)
    }
}
