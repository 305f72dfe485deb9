import Synchronization

/// Which credential each client id belongs to: the one it first came with — its mutual-TLS
/// certificate's identity and the bearer token it presented (which of the host's tokens, never
/// the token itself) — for as long as the host remembers the id.
///
/// A call under a client id with another credential is refused, so a peer that learns another
/// client's id cannot act under it. The host remembers an id while the client has a stream
/// open and for ``memory`` after its last call ended: long enough that a runtime reconnecting
/// after a network drop or a host failover (backoff capped at seconds) finds its id still its
/// own, short enough that an id a stopped worker used does not stay claimed for good.
/// AutoGen's Python workers pick a fresh id per process and never meet this.
///
/// Without mutual TLS and with at most one token every caller has the same credential: the
/// rule then only keeps one stream per id (``RoutingTable/attachData(_:)``).
final class ClientIdentities: Sendable {
    /// What a caller proved about itself.
    struct Credential: Hashable, Sendable, CustomStringConvertible {
        /// Its client certificate's identity, as TLS verified it (nil: none).
        var certificate: String?
        /// Which of the host's bearer tokens it carried (nil: tokens are not required).
        var token: Int?

        var description: String {
            let parts = [certificate.map { "certificate \($0)" }, token.map { "token #\($0 + 1)" }].compactMap { $0 }
            return parts.isEmpty ? "no credential" : parts.joined(separator: ", ")
        }
    }

    /// How long the host remembers a client id's credential after its last call ended.
    static let memory = Duration.seconds(600)
    /// At most this many ids whose clients left are remembered; past it, the ones seen longest
    /// ago are forgotten first (a peer inventing ids cannot grow the table without end).
    static let maxRemembered = 65_536

    private struct Entry {
        var credential: Credential
        /// The client's calls in progress (streams and unary calls).
        var calls = 0
        /// When its last call ended (meaningful while `calls` is 0).
        var lastSeen: ContinuousClock.Instant
    }

    private struct State: ~Copyable {
        var entries: [String: Entry] = [:]
        /// Entries with no call in progress.
        var departed = 0
    }

    private let state = Mutex(State())

    /// Starts a call under `clientID` with `credential`: admitted if the id is unknown, or
    /// remembered with the same credential.
    /// - Returns: false when the id belongs to another credential (the call must be refused).
    func begin(_ clientID: String, _ credential: Credential, now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { state in
            if var entry = state.entries[clientID] {
                if entry.credential != credential {
                    guard entry.calls == 0, now - entry.lastSeen > Self.memory else { return false }
                    entry.credential = credential
                }
                if entry.calls == 0 { state.departed -= 1 }
                entry.calls += 1
                state.entries[clientID] = entry
                return true
            }
            state.entries[clientID] = Entry(credential: credential, calls: 1, lastSeen: now)
            return true
        }
    }

    /// Ends a call ``begin(_:_:now:)`` admitted.
    func end(_ clientID: String, now: ContinuousClock.Instant = .now) {
        let overfull = state.withLock { state -> Bool in
            guard var entry = state.entries[clientID], entry.calls > 0 else { return false }
            entry.calls -= 1
            entry.lastSeen = now
            if entry.calls == 0 { state.departed += 1 }
            state.entries[clientID] = entry
            return state.departed > Self.maxRemembered
        }
        if overfull { forgetDeparted(now: now) }
    }

    /// Forgets the ids whose clients left more than ``memory`` ago, and, while more than
    /// ``maxRemembered`` remain, the ones seen longest ago.
    func forgetDeparted(now: ContinuousClock.Instant) {
        state.withLock { state in
            guard state.departed > 0 else { return }
            var departed: [(id: String, lastSeen: ContinuousClock.Instant)] = []
            for (id, entry) in state.entries where entry.calls == 0 {
                if now - entry.lastSeen > Self.memory {
                    state.entries[id] = nil
                    state.departed -= 1
                } else {
                    departed.append((id, entry.lastSeen))
                }
            }
            if departed.count > Self.maxRemembered {
                // Down to three quarters, so that the next few departures do not sort again.
                departed.sort { $0.lastSeen < $1.lastSeen }
                for (id, _) in departed.prefix(departed.count - Self.maxRemembered * 3 / 4) {
                    state.entries[id] = nil
                    state.departed -= 1
                }
            }
            state.entries.shrinkIfSparse()
        }
    }

    /// How many client ids the host remembers (for tests).
    var count: Int { state.withLock { $0.entries.count } }
}
