/// Acknowledged delivery between our runtime and our host: an extension of `agents.AgentRpc`
/// that only those two speak. AutoGen's workers and AutoGen's host never see any of it.
///
/// - Negotiation: before opening its data channel, a runtime calls ``negotiateMethod`` (unary,
///   empty request and answer). Our host answers OK; AutoGen's host answers UNIMPLEMENTED, and
///   the runtime then speaks plain AutoGen on that stream. The runtime opens `OpenChannel` with
///   ``metadataKey`` = `1`; the host treats that stream as acknowledged.
/// - Acknowledgements: an ``Acknowledgement`` message (field ``acknowledgementField`` of
///   `agents.Message`, unknown to AutoGen) carries a cumulative count of CloudEvent messages on
///   that stream. From the host it says how many of the runtime's publishes (in the order they
///   were written) are handed to every recipient — our runtimes among them having confirmed
///   them; from the runtime it confirms how many events the host sent it have been received.
///   Counts restart at zero with every stream.
/// - Event ids: our runtime names each event `<8 hex>-ad9e-4<3 hex>-<4 hex>-<12 hex>` (UUID
///   form, as AutoGen's are): a random prefix per process and a counter, so that a receiver
///   recognises an event sent again after a reconnect (``DuplicateWindow``).
public enum Delivery {
    /// The unary call a runtime makes to learn that the host speaks this extension.
    public static let negotiateMethod = "/agentd.Delivery/Negotiate"
    /// `OpenChannel` metadata asking for an acknowledged stream.
    public static let metadataKey = "agentd-delivery"

    /// The `agents.Message` field number of an acknowledgement (AutoGen's `Message` uses 1–11).
    public static let acknowledgementField = 100

    /// An acknowledgement message: `Message{100: {1: count}}`.
    public static func acknowledgement(count: UInt64) -> [UInt8] {
        var body: [UInt8] = [0x08]
        appendVarint(count, to: &body)
        return [0xA2, 0x06, UInt8(body.count)] + body
    }

    /// The count an acknowledgement message carries; nil if `bytes` is not one.
    public static func acknowledgedCount(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count >= 5, bytes[0] == 0xA2, bytes[1] == 0x06, Int(bytes[2]) == bytes.count - 3, bytes[3] == 0x08 else {
            return nil
        }
        var value: UInt64 = 0
        var shift: UInt64 = 0
        for index in 4..<bytes.count {
            let byte = bytes[index]
            guard shift < 64 else { return nil }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return index == bytes.count - 1 ? value : nil }
            shift += 7
        }
        return nil
    }

    /// Whether an `agents.Message` is a CloudEvent (its first field is `cloudEvent`, 3): what
    /// both sides count on an acknowledged stream.
    @inline(__always)
    public static func isEvent(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.first == 0x1A
    }

    private static func appendVarint(_ value: UInt64, to bytes: inout [UInt8]) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    // MARK: Event ids

    /// The part of our event ids that marks them as ours (`-ad9e-4` at offset 8).
    private static let marker: [UInt8] = Array("-ad9e-4".utf8)

    /// A new process-wide id prefix: `xxxxxxxx-ad9e-4xxx-xxxx-` (24 characters).
    public static func newEventIDPrefix() -> String {
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef".utf8)
        func digits(_ count: Int) -> String {
            String(decoding: (0..<count).map { _ in hex[Int(generator.next() % 16)] }, as: UTF8.self)
        }
        return "\(digits(8))-ad9e-4\(digits(3))-\(digits(4))-"
    }

    /// An event id: `prefix` (from ``newEventIDPrefix()``) and `sequence` in 12 hex digits.
    public static func eventID(prefix: String, sequence: UInt64) -> String {
        let hex = String(sequence & 0xFFFF_FFFF_FFFF, radix: 16)
        return prefix + String(repeating: "0", count: 12 - hex.count) + hex
    }

    /// The publisher (its prefix, as two numbers) and sequence of one of our event ids; nil
    /// for any other id (AutoGen's random UUIDs among them).
    public static func parseEventID(_ id: UnsafeRawBufferPointer) -> (publisher: Publisher, sequence: UInt64)? {
        guard id.count == 36 else { return nil }
        for (offset, byte) in marker.enumerated() where id[8 + offset] != byte { return nil }
        guard id[18] == UInt8(ascii: "-"), id[23] == UInt8(ascii: "-"),
              let high = hexValue(id, 0..<8), let middle = hexValue(id, 15..<18), let low = hexValue(id, 19..<23),
              let sequence = hexValue(id, 24..<36) else { return nil }
        return (Publisher(high: high, low: middle << 16 | low), sequence)
    }

    /// Who published an event of ours: its process's random id prefix.
    public struct Publisher: Hashable, Sendable {
        public var high: UInt64
        public var low: UInt64
        public init(high: UInt64, low: UInt64) {
            self.high = high
            self.low = low
        }
    }

    private static func hexValue(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> UInt64? {
        var value: UInt64 = 0
        for index in range {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }
}

/// Which of each publisher's events a receiver has delivered, to drop one that comes again (a
/// publisher sends again, after a reconnect, what its host had not acknowledged).
///
/// Per publisher, the last ``span`` sequence numbers below the highest one seen are
/// remembered exactly. An event older than that is delivered: it cannot be a resend (a
/// runtime keeps at most ``span`` publishes unacknowledged), only a first delivery of an old
/// event from the host's late-subscriber window. At most ``publisherLimit``
/// publishers are remembered; past it the one heard from least recently is forgotten.
public struct DuplicateWindow: Sendable {
    public static let span: UInt64 = 65_536
    public static let publisherLimit = 1_024

    private struct Seen {
        var highest: UInt64
        /// Bit `s % span` is set when sequence `s` (within the span below `highest`) was seen.
        var bits: [UInt64]
        var lastUse: UInt64
    }

    private var publishers: [Delivery.Publisher: Seen] = [:]
    private var clock: UInt64 = 0

    public init() {}

    /// Records `sequence` of `publisher`; false if it was delivered already (a duplicate).
    public mutating func firstDelivery(of sequence: UInt64, from publisher: Delivery.Publisher) -> Bool {
        clock &+= 1
        guard let index = publishers.index(forKey: publisher) else {
            if publishers.count >= Self.publisherLimit, let oldest = publishers.min(by: { $0.value.lastUse < $1.value.lastUse }) {
                publishers[oldest.key] = nil
            }
            var bits = [UInt64](repeating: 0, count: Int(Self.span / 64))
            Self.set(sequence, in: &bits)
            publishers[publisher] = Seen(highest: sequence, bits: bits, lastUse: clock)
            return true
        }
        // In place: a copy of `Seen` would copy its 8 KiB of bits on every event.
        return Self.record(sequence, in: &publishers.values[index], at: clock)
    }

    private static func record(_ sequence: UInt64, in seen: inout Seen, at clock: UInt64) -> Bool {
        seen.lastUse = clock
        if sequence > seen.highest {
            // Slide: forget what falls out of the span below the new highest.
            let step = sequence - seen.highest
            if step >= span {
                for word in seen.bits.indices { seen.bits[word] = 0 }
            } else {
                var forgotten = seen.highest &+ 1
                while forgotten <= sequence {
                    clear(forgotten, in: &seen.bits)
                    forgotten &+= 1
                }
            }
            seen.highest = sequence
            set(sequence, in: &seen.bits)
            return true
        }
        guard seen.highest - sequence < span else { return true }
        if isSet(sequence, in: seen.bits) { return false }
        set(sequence, in: &seen.bits)
        return true
    }

    /// Publishers remembered now.
    public var publisherCount: Int { publishers.count }

    private static func set(_ sequence: UInt64, in bits: inout [UInt64]) {
        let slot = sequence % span
        bits[Int(slot / 64)] |= 1 << (slot % 64)
    }

    private static func clear(_ sequence: UInt64, in bits: inout [UInt64]) {
        let slot = sequence % span
        bits[Int(slot / 64)] &= ~(1 << (slot % 64))
    }

    private static func isSet(_ sequence: UInt64, in bits: [UInt64]) -> Bool {
        let slot = sequence % span
        return bits[Int(slot / 64)] & (1 << (slot % 64)) != 0
    }
}
