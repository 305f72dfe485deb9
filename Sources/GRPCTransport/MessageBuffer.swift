import CGRPC

/// One gRPC message's bytes, held in a C-core byte buffer.
///
/// Received messages arrive as a `MessageBuffer` without a copy, and a `MessageBuffer` can be
/// sent on any number of calls without copying its bytes (each send shares the buffer's
/// reference-counted slice), which is how a host forwards a message unchanged to many peers.
/// The bytes are always contiguous, so ``withUnsafeBytes(_:)`` never copies.
public final class MessageBuffer: @unchecked Sendable {
    // @unchecked Sendable: the byte buffer is immutable after init (a single uncompressed
    // slice); the C core's slice reference counts are atomic, and it is destroyed only in deinit.
    let raw: UnsafeMutablePointer<grpc_byte_buffer>
    private let start: UnsafeRawPointer?
    /// The message's length in bytes.
    public let count: Int

    /// Takes ownership of a byte buffer the C core handed over, flattening it if it has more
    /// than one slice.
    init(taking buffer: UnsafeMutablePointer<grpc_byte_buffer>) {
        var bytes: UnsafePointer<UInt8>?
        var length = 0
        if cgrpc_byte_buffer_single_slice(buffer, &bytes, &length) != 0 {
            raw = buffer
        } else {
            let flat = cgrpc_byte_buffer_flatten(buffer)!
            grpc_byte_buffer_destroy(buffer)
            raw = flat
            _ = cgrpc_byte_buffer_single_slice(flat, &bytes, &length)
        }
        start = UnsafeRawPointer(bytes)
        count = length
    }

    /// A message holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(taking: cgrpc_byte_buffer_copying(bytes.baseAddress, bytes.count))
    }

    /// A message holding a copy of `bytes`.
    public convenience init<Bytes: Collection>(_ bytes: Bytes) where Bytes.Element == UInt8 {
        let buffer: UnsafeMutablePointer<grpc_byte_buffer> =
            bytes.withContiguousStorageIfAvailable { cgrpc_byte_buffer_copying($0.baseAddress, $0.count) }
            ?? Array(bytes).withUnsafeBytes { cgrpc_byte_buffer_copying($0.baseAddress, $0.count) }
        self.init(taking: buffer)
    }

    deinit { grpc_byte_buffer_destroy(raw) }

    /// Calls `body` with the message's bytes, valid only during the call.
    @inline(__always)
    public func withUnsafeBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        try body(UnsafeRawBufferPointer(start: count == 0 ? nil : start, count: count))
    }

    /// The message's bytes as an array (a copy).
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// A new C byte buffer sharing this message's slice, for one send operation; the sender
    /// destroys it once the send has completed.
    func makeSendBuffer() -> UnsafeMutablePointer<grpc_byte_buffer> {
        grpc_byte_buffer_copy(raw)
    }
}
