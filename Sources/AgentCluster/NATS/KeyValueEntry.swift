import CNATS

/// A value of a key in a ``KeyValueBucket`` at one revision, or the marker of its deletion.
public struct KeyValueEntry: Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        case put
        /// Deleted (``KeyValueBucket/delete(_:)``): the history stays.
        case delete
        /// Purged (``KeyValueBucket/purge(_:)``): the history is gone too.
        case purge
        /// Only from a ``KeyValueWatch``: the key was there before a reconnect and is gone after
        /// it, with no marker left to say how (its markers were purged, or the bucket's TTL
        /// expired it). Its revision is 0.
        case vanished
    }

    public var key: String
    /// The value; empty for a delete, purge or vanished key.
    public var value: [UInt8]
    /// The bucket-wide sequence number of this write: what
    /// ``KeyValueBucket/update(_:value:ifRevision:)`` compares.
    public var revision: UInt64
    public var operation: Operation
    /// When the server stored it, in nanoseconds since the Unix epoch (0 for a vanished key).
    public var createdNanoseconds: Int64

    public init(key: String, value: [UInt8], revision: UInt64, operation: Operation, createdNanoseconds: Int64) {
        self.key = key
        self.value = value
        self.revision = revision
        self.operation = operation
        self.createdNanoseconds = createdNanoseconds
    }

    /// Copies `entry` (a `kvEntry`, which the caller still owns).
    init(copying entry: OpaquePointer) {
        key = String(cString: kvEntry_Key(entry))
        let length = Int(kvEntry_ValueLen(entry))
        if length > 0, let bytes = kvEntry_Value(entry) {
            value = [UInt8](UnsafeRawBufferPointer(start: bytes, count: length))
        } else {
            value = []
        }
        revision = kvEntry_Revision(entry)
        switch kvEntry_Operation(entry) {
        case kvOp_Delete: operation = .delete
        case kvOp_Purge: operation = .purge
        default: operation = .put
        }
        createdNanoseconds = kvEntry_Created(entry)
    }
}
