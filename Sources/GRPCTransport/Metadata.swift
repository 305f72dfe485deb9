import CGRPC

/// gRPC metadata: an ordered list of key/value pairs (keys are lower-case ASCII; a key may
/// repeat). Binary (`-bin`) values are carried as their raw bytes in a `String` only when valid
/// UTF-8; this project uses text metadata only.
public struct Metadata: Sendable, Hashable, ExpressibleByDictionaryLiteral, Sequence,
    CustomStringConvertible
{
    public private(set) var entries: [(key: String, value: String)]

    public init() { entries = [] }

    public init(dictionaryLiteral elements: (String, String)...) {
        entries = elements.map { (key: $0.0.lowercased(), value: $0.1) }
    }

    /// Appends `value` under `key` (lower-cased, as HTTP/2 requires).
    public mutating func add(_ key: String, _ value: String) {
        entries.append((key: key.lowercased(), value: value))
    }

    /// The first value under `key`, if any.
    public subscript(key: String) -> String? {
        let key = key.lowercased()
        return entries.first { $0.key == key }?.value
    }

    /// Every value under `key`, in order.
    public func values(for key: String) -> [String] {
        let key = key.lowercased()
        return entries.filter { $0.key == key }.map(\.value)
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(key: String, value: String)]> {
        entries.makeIterator()
    }

    public var description: String {
        "[" + entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "]"
    }

    public static func == (lhs: Metadata, rhs: Metadata) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.key == $1.key && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.key)
            hasher.combine(entry.value)
        }
    }

    /// Copies a C metadata array (whose slices belong to the call) into Swift strings.
    init(copying array: UnsafePointer<grpc_metadata_array>) {
        entries = []
        guard let metadata = array.pointee.metadata else { return }
        entries.reserveCapacity(array.pointee.count)
        for index in 0..<array.pointee.count {
            entries.append(
                (key: String(slice: &metadata[index].key), value: String(slice: &metadata[index].value)))
        }
    }
}

extension String {
    /// Copies a slice's bytes as UTF-8 (invalid sequences are repaired).
    init(slice: UnsafeMutablePointer<grpc_slice>) {
        let start = cgrpc_slice_start(slice)
        let length = cgrpc_slice_length(slice)
        guard let start, length > 0 else {
            self = ""
            return
        }
        self = String(decoding: UnsafeBufferPointer(start: start, count: length), as: UTF8.self)
    }
}

/// Metadata laid out as a C array for one send operation; owns the slices until released.
struct CMetadataArray {
    private(set) var pointer: UnsafeMutablePointer<grpc_metadata>?
    private(set) var count: Int

    init(_ metadata: Metadata) {
        count = metadata.count
        guard count > 0 else {
            pointer = nil
            return
        }
        let array = UnsafeMutablePointer<grpc_metadata>.allocate(capacity: count)
        for (index, entry) in metadata.entries.enumerated() {
            var item = grpc_metadata()
            item.key = grpc_slice.copying(entry.key)
            item.value = grpc_slice.copying(entry.value)
            (array + index).initialize(to: item)
        }
        pointer = array
    }

    /// Unreferences the slices and frees the array (after the send has completed).
    mutating func release() {
        guard let array = pointer else { return }
        for index in 0..<count {
            grpc_slice_unref(array[index].key)
            grpc_slice_unref(array[index].value)
        }
        array.deinitialize(count: count)
        array.deallocate()
        pointer = nil
        count = 0
    }
}

extension grpc_slice {
    /// A new slice holding a copy of `string`'s UTF-8 bytes.
    static func copying(_ string: String) -> grpc_slice {
        var string = string
        return string.withUTF8 { bytes in
            grpc_slice_from_copied_buffer(
                UnsafeRawPointer(bytes.baseAddress ?? UnsafePointer(bitPattern: 1)!)
                    .assumingMemoryBound(to: CChar.self), bytes.count)
        }
    }
}
