/// Topic type → where its events go, as ``RoutingTable/recipients(ofTopicType:)`` worked it
/// out: emptied on every change of the table, and bounded in entries and in bytes, so that a
/// stream of events to distinct topic types — nobody subscribed to them, each cached as an
/// empty list — cannot grow it without end.
struct RecipientCache: Sendable {
    /// At most this many topic types are cached…
    static let maxEntries = 65_536
    /// …and at most about this many bytes (topic types are at most ``FieldLimits/topicType``
    /// bytes each, so the count alone would allow 64 MiB).
    static let maxBytes = 8 * 1024 * 1024

    private var entries: [String: RoutingTable.Recipients] = [:]
    /// What the entries hold, estimated: each topic type's bytes, its recipient lists, and a
    /// fixed cost for the entry.
    private(set) var bytes = 0

    var count: Int { entries.count }

    subscript(topicType: String) -> RoutingTable.Recipients? { entries[topicType] }

    /// Caches `recipients` for `topicType`; when that would pass a bound, everything cached
    /// goes first and its memory is given back.
    mutating func insert(_ recipients: RoutingTable.Recipients, for topicType: String) {
        let size = Self.entryOverhead + topicType.utf8.count
            + 8 * (recipients.local.count + recipients.hosts.count + recipients.shared.count)
        if entries.count >= Self.maxEntries || bytes + size > Self.maxBytes { removeAll() }
        entries[topicType] = recipients
        bytes += size
    }

    /// Forgets every entry (`keepingCapacity`: keeps the table's storage, for the rebuilds
    /// after a change, whose size the entry bound limits).
    mutating func removeAll(keepingCapacity: Bool = false) {
        entries.removeAll(keepingCapacity: keepingCapacity)
        bytes = 0
    }

    /// A dictionary slot (key, value and hash-table share) and a topic type's string header.
    private static let entryOverhead = 96
}
