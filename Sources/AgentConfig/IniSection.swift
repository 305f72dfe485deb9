/// One `[name]` section of an INI file and its entries in file order.
public struct IniSection: Sendable, Hashable {
    /// The name between the brackets, surrounding whitespace removed (`runtime`,
    /// `plugin.echo-plugin`). Names are case-sensitive.
    public var name: String
    /// The file it was read from.
    public var path: String
    /// The 1-based line of its `[name]` header.
    public var line: Int
    /// Its entries in the order they were written; no key appears twice.
    public var entries: [IniEntry]

    public init(name: String, path: String, line: Int, entries: [IniEntry] = []) {
        self.name = name
        self.path = path
        self.line = line
        self.entries = entries
    }

    /// The entry for `key`, if the section has one.
    public subscript(key: String) -> IniEntry? {
        entries.first { $0.key == key }
    }

    /// The entries as a dictionary from key to value.
    public var values: [String: String] {
        Dictionary(entries.map { ($0.key, $0.value) }, uniquingKeysWith: { first, _ in first })
    }
}
