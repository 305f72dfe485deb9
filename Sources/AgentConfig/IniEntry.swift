/// One `key = value` line of an INI file, with where it was written.
public struct IniEntry: Sendable, Hashable {
    /// The name of the section it is in, without brackets.
    public var section: String
    /// The key, as written (keys are case-sensitive).
    public var key: String
    /// The value: surrounding whitespace and any inline comment removed, quotes and escapes
    /// resolved. Empty for `key =`.
    public var value: String
    /// The file it was read from.
    public var path: String
    /// Its 1-based line number.
    public var line: Int

    public init(section: String, key: String, value: String, path: String, line: Int) {
        self.section = section
        self.key = key
        self.value = value
        self.path = path
        self.line = line
    }
}
