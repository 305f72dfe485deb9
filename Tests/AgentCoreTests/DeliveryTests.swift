import AgentCore
import Testing

@Suite("Delivery: acknowledgement messages, our event ids, the duplicate window")
struct DeliveryCodecTests {
    @Test("an acknowledgement carries its count, small or large; other messages are not one")
    func acknowledgementRoundTrip() {
        for count: UInt64 in [0, 1, 127, 128, 300, 1 << 32, .max] {
            let bytes = Delivery.acknowledgement(count: count)
            #expect(bytes.withUnsafeBytes { Delivery.acknowledgedCount($0) } == count)
            #expect(!bytes.withUnsafeBytes { Delivery.isEvent($0) })
        }
        let event: [UInt8] = [0x1A, 0x00]
        #expect(event.withUnsafeBytes { Delivery.acknowledgedCount($0) } == nil)
        #expect(event.withUnsafeBytes { Delivery.isEvent($0) })
        // Truncated, or with bytes past the count: not an acknowledgement.
        var long = Delivery.acknowledgement(count: 1 << 20)
        long.removeLast()
        #expect(long.withUnsafeBytes { Delivery.acknowledgedCount($0) } == nil)
        #expect(([0xA2, 0x06, 3, 0x08, 0x01, 0x00] as [UInt8]).withUnsafeBytes { Delivery.acknowledgedCount($0) } == nil)
    }

    @Test("our event ids name their publisher and sequence; AutoGen's random UUIDs do not parse")
    func eventIDs() {
        let prefix = Delivery.newEventIDPrefix()
        let other = Delivery.newEventIDPrefix()
        #expect(prefix != other)
        let id = Delivery.eventID(prefix: prefix, sequence: 0xABC)
        #expect(id.utf8.count == 36)
        let parsed = Array(id.utf8).withUnsafeBytes { Delivery.parseEventID($0) }
        #expect(parsed?.sequence == 0xABC)
        let sameProcess = Array(Delivery.eventID(prefix: prefix, sequence: 7).utf8).withUnsafeBytes { Delivery.parseEventID($0) }
        let otherProcess = Array(Delivery.eventID(prefix: other, sequence: 7).utf8).withUnsafeBytes { Delivery.parseEventID($0) }
        #expect(parsed?.publisher == sameProcess?.publisher)
        #expect(parsed?.publisher != otherProcess?.publisher)
        for text in ["3f1c2a9e-5b7d-4c1e-9a2b-0123456789ab", "not-an-id", "", "zzzzzzzz-ad9e-4zzz-zzzz-zzzzzzzzzzzz"] {
            #expect(Array(text.utf8).withUnsafeBytes { Delivery.parseEventID($0) } == nil, "\(text)")
        }
    }

    @Test("the duplicate window drops what it saw, within its span, per publisher, in any order")
    func duplicateWindow() {
        var window = DuplicateWindow()
        func first(_ sequence: UInt64, _ publisher: Delivery.Publisher) -> Bool {
            window.firstDelivery(of: sequence, from: publisher)
        }
        let a = Delivery.Publisher(high: 1, low: 1)
        let b = Delivery.Publisher(high: 2, low: 2)
        #expect(first(5, a))
        #expect(first(3, a), "an older sequence never seen (a late-subscriber event)")
        #expect(!first(5, a))
        #expect(!first(3, a))
        #expect(first(5, b), "another publisher's 5")
        for sequence in 6..<1_000 as Range<UInt64> { #expect(first(sequence, a)) }
        // A resend of the last 500: every one dropped.
        #expect((500..<1_000 as Range<UInt64>).allSatisfy { !first($0, a) })
        // Past the span, an old sequence counts as new (it cannot be a resend).
        let far = 1_000 + DuplicateWindow.span
        #expect(first(far, a))
        #expect(first(999, a))
        #expect(!first(far, a))
        // A big jump forgets what fell out of the span, and keeps what it saw since.
        #expect(first(far + 10, a))
        #expect(!first(far + 10, a))
        #expect(first(far + 9, a))
    }

    @Test("the duplicate window remembers at most its publisher limit, forgetting the least recent")
    func publisherLimit() {
        var window = DuplicateWindow()
        func first(_ sequence: UInt64, _ publisher: Delivery.Publisher) -> Bool {
            window.firstDelivery(of: sequence, from: publisher)
        }
        for index in 0..<UInt64(DuplicateWindow.publisherLimit + 10) {
            _ = first(1, Delivery.Publisher(high: index, low: 0))
        }
        #expect(window.publisherCount == DuplicateWindow.publisherLimit)
        let newest = Delivery.Publisher(high: UInt64(DuplicateWindow.publisherLimit + 9), low: 0)
        #expect(!first(1, newest))
        #expect(first(1, Delivery.Publisher(high: 0, low: 0)), "the oldest was forgotten")
    }
}
