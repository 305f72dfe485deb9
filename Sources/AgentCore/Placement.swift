/// Where each key of a *shared* agent type lives: agent types several workers serve, each
/// (type, key) on one of them.
///
/// Rendezvous (highest random weight) hashing: the owner of (type, key) is the member whose
/// hash of (type, key, member) is highest. Every host and every worker computes the same owner
/// from the same members, with no directory; when a member joins, only the keys it now wins move
/// to it, and when one leaves, only its keys move (each to its second choice).
public enum Placement {
    /// The metadata a worker sends with `RegisterAgent` for a type it serves as shared.
    public static let sharedMetadataKey = "agentd-shared"

    /// The topic type of the host's notice to the workers of a shared type: which workers serve
    /// it now (CloudEvent `source` = the agent type, text data = the client ids, one per line).
    /// Handled by the runtime itself, never delivered to agents.
    public static let noticeTopicType = "agentd.placement"

    /// The owner of `key` of agent type `type` among `members` (client ids); nil if none.
    public static func owner(type: String, key: String, among members: [String]) -> String? {
        guard members.count > 1 else { return members.first }
        let base = hash(type, key)
        var best: (score: UInt64, member: String)?
        for member in members {
            let score = mix(hash(member, seed: base))
            if let current = best, current.score > score || (current.score == score && current.member > member) { continue }
            best = (score, member)
        }
        return best?.member
    }

    /// FNV-1a over `type`, a separator, and `key`.
    private static func hash(_ type: String, _ key: String) -> UInt64 {
        hash(key, seed: hash(type, seed: 0xcbf2_9ce4_8422_2325) ^ 0xff)
    }

    private static func hash(_ text: String, seed: UInt64) -> UInt64 {
        var value = seed
        for byte in text.utf8 {
            value ^= UInt64(byte)
            value = value &* 0x0000_0100_0000_01b3
        }
        return value
    }

    /// SplitMix64's finaliser: spreads FNV's weak low bits over the whole word.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9e37_79b9_7f4a_7c15
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}
