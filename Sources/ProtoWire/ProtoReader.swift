/// A malformed protobuf message: what was wrong and at which byte.
public struct WireError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var offset: Int
    public init(_ message: String, at offset: Int) {
        self.message = message
        self.offset = offset
    }
    public var description: String { "\(message) at byte \(offset)" }
}

/// One field read off the wire.
public struct ProtoField: Sendable {
    public enum Value: Sendable {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        /// The payload's byte range within the buffer being read.
        case bytes(Range<Int>)
    }
    public var number: Int
    public var value: Value
    /// The whole field's byte range (tag included), for copying it unchanged.
    public var range: Range<Int>
}

/// Reads the protobuf wire format field by field, without decoding more than asked.
///
/// The host uses it to find the few fields routing needs (topic type, target agent type,
/// request id) and to forward the rest byte for byte.
public struct ProtoReader {
    public let buffer: UnsafeRawBufferPointer
    public private(set) var offset: Int
    private let end: Int

    /// Reads `range` of `buffer` (all of it by default).
    public init(_ buffer: UnsafeRawBufferPointer, range: Range<Int>? = nil) {
        self.buffer = buffer
        self.offset = range?.lowerBound ?? 0
        self.end = range?.upperBound ?? buffer.count
    }

    /// The next field, or nil at the end.
    /// - Throws: ``WireError`` for a truncated or malformed field.
    public mutating func next() throws -> ProtoField? {
        guard offset < end else { return nil }
        let start = offset
        let key = try readVarint()
        let number = Int(key >> 3)
        guard number > 0 else { throw WireError("field number 0", at: start) }
        let value: ProtoField.Value
        switch key & 7 {
        case 0: value = .varint(try readVarint())
        case 1:
            guard end - offset >= 8 else { throw WireError("truncated fixed64 field \(number)", at: start) }
            value = .fixed64(buffer.loadUnaligned(fromByteOffset: offset, as: UInt64.self).littleEndian)
            offset += 8
        case 2:
            let length = try readVarint()
            guard length <= UInt64(end - offset) else {
                throw WireError("field \(number) claims \(length) bytes but \(end - offset) remain", at: start)
            }
            value = .bytes(offset..<(offset + Int(length)))
            offset += Int(length)
        case 5:
            guard end - offset >= 4 else { throw WireError("truncated fixed32 field \(number)", at: start) }
            value = .fixed32(buffer.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
            offset += 4
        default:
            throw WireError("unsupported wire type \(key & 7) for field \(number)", at: start)
        }
        return ProtoField(number: number, value: value, range: start..<offset)
    }

    private mutating func readVarint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        let start = offset
        while offset < end {
            let byte = buffer[offset]
            offset += 1
            if shift == 63, byte > 1 { throw WireError("varint overflows 64 bits", at: start) }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw WireError("truncated varint", at: start)
    }

    /// The UTF-8 text of a length-delimited field (invalid sequences repaired).
    public func string(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: buffer[range]), as: UTF8.self)
    }

    /// A copy of a length-delimited field's bytes.
    public func bytes(_ range: Range<Int>) -> [UInt8] { Array(buffer[range]) }
}

extension ProtoField {
    /// The byte range of a length-delimited field.
    /// - Throws: ``WireError`` if the field has another wire type.
    public func bytesRange() throws -> Range<Int> {
        guard case .bytes(let range) = value else {
            throw WireError("field \(number) should be length-delimited", at: self.range.lowerBound)
        }
        return range
    }
}
