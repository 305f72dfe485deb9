/// Writes the protobuf wire format into a byte array.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func varint(_ value: UInt64) {
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
    }

    private mutating func tag(_ number: Int, _ wireType: UInt64) {
        varint(UInt64(number) << 3 | wireType)
    }

    /// A varint field (skipped when zero, as proto3 does).
    public mutating func varintField(_ number: Int, _ value: UInt64) {
        guard value != 0 else { return }
        tag(number, 0)
        varint(value)
    }

    /// A string field (skipped when empty, as proto3 does).
    public mutating func stringField(_ number: Int, _ value: String) {
        guard !value.isEmpty else { return }
        var value = value
        value.withUTF8 { bytesField(number, UnsafeRawBufferPointer($0)) }
    }

    /// A length-delimited field holding `value`'s bytes (written even when empty).
    public mutating func bytesField(_ number: Int, _ value: UnsafeRawBufferPointer) {
        tag(number, 2)
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func bytesField(_ number: Int, _ value: [UInt8]) {
        value.withUnsafeBytes { bytesField(number, $0) }
    }

    /// A nested message field (written even when empty, so its presence is kept).
    public mutating func messageField(_ number: Int, _ build: (inout ProtoWriter) -> Void) {
        var nested = ProtoWriter()
        build(&nested)
        bytesField(number, nested.bytes)
    }

    /// Raw bytes already in wire format (fields copied from another message).
    public mutating func raw(_ value: UnsafeRawBufferPointer) {
        bytes.append(contentsOf: value)
    }
}
