import AgentCore

/// The NATS subjects and key-value keys of a cluster, and the encoding of names in them.
///
/// Agent types, topic types, subscription ids and host names may hold characters that NATS
/// gives a meaning (`.`, `*`, `>`, spaces), so each is one token: base64url without padding.
enum ClusterNames {
    /// Key-value bucket of agent type claims: key = token(type), value = ``TypeClaim``.
    static let agentTypesBucket = "agentd-agent-types"
    /// Key-value bucket of subscriptions: key = token(host).token(subscription id), value = an
    /// `AddSubscriptionRequest`.
    static let subscriptionsBucket = "agentd-subscriptions"
    /// Key-value bucket of the workers of shared agent types: key =
    /// token(type).token(host).token(client), value empty.
    static let sharedTypesBucket = "agentd-shared-types"

    static func sharedMemberKey(type: String, host: String, client: String) -> String {
        "\(token(type)).\(token(host)).\(token(client))"
    }

    /// The type, host and client of a shared member key.
    static func parseSharedMemberKey(_ key: String) -> (type: String, host: String, client: String)? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, let type = text(ofToken: parts[0]), let host = text(ofToken: parts[1]),
              let client = text(ofToken: parts[2]) else { return nil }
        return (type, host, client)
    }

    /// Heartbeats of every host (``Heartbeat``).
    static let heartbeats = "agentd.heartbeat"

    /// Events published on another host for this host's workers.
    static func events(_ host: String) -> String { "agentd.h.\(token(host)).events" }
    /// RPC requests for agent types this host's workers serve.
    static func requests(_ host: String) -> String { "agentd.h.\(token(host)).requests" }
    /// Answers to this host's requests: one subject per request,
    /// `agentd.h.<token(host)>.replies.<request id>.<milliseconds the caller still waits>`, so
    /// that a request carries its caller's host and deadline without headers (nats.c parses
    /// headers on every message that has them).
    static func replies(_ host: String) -> String { "agentd.h.\(token(host)).replies" }

    static func replySubject(host: String, requestID: UInt64, waitsMilliseconds: Int64) -> String {
        "\(replies(host)).\(requestID).\(waitsMilliseconds)"
    }

    /// The calling host and how long it still waits, from a request's reply subject.
    static func parseReplySubject(_ subject: String) -> (host: String, requestID: UInt64, waitsMilliseconds: Int64)? {
        let parts = subject.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "agentd", parts[1] == "h", parts[3] == "replies",
              let host = text(ofToken: parts[2]), let id = UInt64(parts[4]), let waits = Int64(parts[5]) else { return nil }
        return (host, id, waits)
    }
    /// Control-channel messages for this host's workers.
    static func control(_ host: String) -> String { "agentd.h.\(token(host)).control" }

    static func subscriptionKey(host: String, id: String) -> String { "\(token(host)).\(token(id))" }
    /// The host and subscription id of a subscription key.
    static func parseSubscriptionKey(_ key: String) -> (host: String, id: String)? {
        let parts = key.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let host = text(ofToken: parts[0]), let id = text(ofToken: parts[1]) else { return nil }
        return (host, id)
    }

    /// Message header: the sending host's name.
    static let hostHeader = "Agentd-Host"

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// `text` as one subject token and key-value key token: base64url, no padding (`_` for
    /// the empty text, which base64 would leave empty).
    static func token(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { return "_" }
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var value = 0
            for (offset, byte) in chunk.enumerated() { value |= Int(byte) << (16 - 8 * offset) }
            for position in 0...chunk.count { out.append(alphabet[(value >> (18 - 6 * position)) & 63]) }
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The text of a ``token(_:)``; nil if it is not one.
    static func text(ofToken token: Substring) -> String? {
        if token == "_" { return "" }
        var value = 0
        var bits = 0
        var out: [UInt8] = []
        for character in token.utf8 {
            guard let digit = alphabet.firstIndex(of: character) else { return nil }
            value = (value << 6) | digit
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8((value >> bits) & 0xFF))
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}

/// The value of an agent type's claim: who holds it.
struct TypeClaim: Sendable, Equatable {
    var host: String
    var client: String
    /// The holding host's process (a host restarted under the same name is another).
    var incarnation: String

    var encoded: [UInt8] { Array("\(host)\n\(client)\n\(incarnation)".utf8) }

    init(host: String, client: String, incarnation: String) {
        self.host = host
        self.client = client
        self.incarnation = incarnation
    }

    init?(_ bytes: [UInt8]) {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count == 3 else { return nil }
        host = String(lines[0])
        client = String(lines[1])
        incarnation = String(lines[2])
    }
}

/// What a host says every ``ClusterConfiguration/heartbeat``: that it is alive, or leaving.
struct Heartbeat: Sendable, Equatable {
    var host: String
    var incarnation: String
    var leaving: Bool

    var encoded: [UInt8] { Array("\(host)\n\(incarnation)\n\(leaving ? "leaving" : "alive")".utf8) }

    init(host: String, incarnation: String, leaving: Bool) {
        self.host = host
        self.incarnation = incarnation
        self.leaving = leaving
    }

    init?(_ bytes: [UInt8]) {
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count == 3 else { return nil }
        host = String(lines[0])
        incarnation = String(lines[1])
        leaving = lines[2] == "leaving"
    }
}
