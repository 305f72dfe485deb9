/// A pointer to a nats.c object that guards itself: a connection, subscription, JetStream
/// context, key-value store or key-value watcher.
///
/// Each of those nats.c objects takes its own mutex in every call and is documented as usable
/// from any thread, so sharing the pointer is safe; what is not is using it after it is
/// destroyed, which the owner of each handle rules out (it destroys it once, when no one else
/// can reach it). A `natsMsg` or `natsOptions` is not such an object and never goes in one.
struct LibraryHandle: @unchecked Sendable, Hashable {
    // @unchecked Sendable: see above — the pointee does its own locking.
    let pointer: OpaquePointer

    init(_ pointer: OpaquePointer) {
        self.pointer = pointer
    }
}
