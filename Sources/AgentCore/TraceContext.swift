import Synchronization

/// W3C trace context (`traceparent`, `tracestate`): what AutoGen carries in an RPC's metadata and
/// reads from a CloudEvent's attributes, and what agentd carries on every message a handler
/// sends, so that a trace does not break at a publish.
///
/// `traceparent` is `00-<trace id: 32 hex>-<parent span id: 16 hex>-<flags: 2 hex>`.
public struct TraceContext: Sendable, Hashable {
    public var traceID: String
    /// The span that sent the message (the parent of whatever handles it).
    public var spanID: String
    public var flags: String
    public var state: String

    /// Parses a `traceparent` (and carries `tracestate` along); nil when it is not version 00's
    /// shape, or the ids are all zero (invalid by the W3C rules).
    public init?(traceparent: String, tracestate: String = "") {
        let parts = traceparent.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count >= 4, parts[0].count == 2, parts[0] != "ff", parts[1].count == 32, parts[2].count == 16,
              parts[3].count == 2, parts.allSatisfy({ $0.utf8.allSatisfy(Self.isLowerHex) }),
              parts[0] != "00" || parts.count == 4,
              parts[1].contains(where: { $0 != "0" }), parts[2].contains(where: { $0 != "0" })
        else { return nil }
        traceID = String(parts[1])
        spanID = String(parts[2])
        flags = String(parts[3])
        state = tracestate
    }

    public init(traceID: String, spanID: String, flags: String, state: String) {
        self.traceID = traceID
        self.spanID = spanID
        self.flags = flags
        self.state = state
    }

    public var traceparent: String { "00-\(traceID)-\(spanID)-\(flags)" }

    /// `0-9a-f` in ASCII (W3C allows lower case only; `Character.isHexDigit` also takes
    /// full-width digits).
    private static func isLowerHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
    }

    /// The context of a new span in the same trace, whose parent is this one's span: what a
    /// handler's outgoing messages carry.
    public func child() -> TraceContext {
        TraceContext(traceID: traceID, spanID: Self.newSpanID(), flags: flags, state: state)
    }

    /// 16 hex digits, never all zero: a counter mixed by SplitMix64 from a random start (no
    /// system call per span).
    static func newSpanID() -> String {
        var z = spanCounter.wrappingAdd(0x9e37_79b9_7f4a_7c15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        z ^= z >> 31
        if z == 0 { z = 1 }
        let hex = String(z, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    private static let spanCounter = Atomic<UInt64>(UInt64.random(in: 1...UInt64.max))
}
