/// What re-reading an INI file changes (SIGHUP on `agentd run`): the keys whose value differs
/// between the file as it was and as it is now (added and removed keys too), split into those
/// the runtime applies while it serves and those that need a restart.
///
/// Applied live: `[log] level`, `[runtime] mailbox_limit`, `[runtime] rpc_timeout`, and every
/// `[plugin.NAME]` key but `shared`. A change inside a file a key names (a TLS certificate, a
/// token file) is not seen here: it too needs a restart.
public struct ConfigurationReload: Sendable, Equatable {
    /// Changed keys applied live, as `[section] key`, in file order (the new file's, then
    /// removed ones).
    public var applied: [String]
    /// Changed keys that take effect only at a restart, as `[section] key`.
    public var needsRestart: [String]

    /// The changes from `old` (what the runtime runs with) to `new`.
    /// - Parameters:
    ///   - old: the file as it was read before.
    ///   - new: the file as it is now (already checked: ``RuntimeConfiguration/init(document:)``).
    public init(from old: IniDocument, to new: IniDocument) {
        let (beforeOrder, before) = Self.values(of: old)
        let (afterOrder, after) = Self.values(of: new)
        let changed = afterOrder.filter { before[$0] != after[$0] } + beforeOrder.filter { after[$0] == nil }
        applied = changed.filter(\.appliesLive).map(\.description)
        needsRestart = changed.filter { !$0.appliesLive }.map(\.description)
    }

    /// Nothing changed.
    public var isEmpty: Bool { applied.isEmpty && needsRestart.isEmpty }

    /// Whether `agentd run` applies a change of `[section] key` without a restart.
    public static func appliesLive(section: String, key: String) -> Bool {
        switch (section, key) {
        case ("log", "level"), ("runtime", "mailbox_limit"), ("runtime", "rpc_timeout"): true
        default: section.hasPrefix("plugin.") && key != "shared"
        }
    }

    private struct Name: Hashable, CustomStringConvertible {
        var section: String
        var key: String
        var appliesLive: Bool { ConfigurationReload.appliesLive(section: section, key: key) }
        var description: String { "[\(section)] \(key)" }
    }

    /// The file's keys in file order, and their values (a key written twice: its last value).
    private static func values(of document: IniDocument) -> ([Name], [Name: String]) {
        var order: [Name] = []
        var values: [Name: String] = [:]
        for section in document.sections {
            for entry in section.entries {
                let name = Name(section: section.name, key: entry.key)
                if values.updateValue(entry.value, forKey: name) == nil { order.append(name) }
            }
        }
        return (order, values)
    }
}
