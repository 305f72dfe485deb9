/// Where a fuzz target puts what it computes only to have it computed: a value handed to
/// ``keep(_:)`` is stored where the optimizer cannot prove nobody reads it, so the reads that
/// produced it stay in the build (and AddressSanitizer checks them).
///
/// `_ = f(x)` is not enough in an optimized build: the optimizer may drop the call, or part of
/// it. (Swift 6.3.1 at -O even miscompiles a discarded `Array(UnsafeRawBufferPointer)` in a
/// loop, releasing the new array before copying into it; see Fuzz/README.md.)
public enum Sink {
    // libFuzzer runs one input at a time, on one thread.
    nonisolated(unsafe) private static var total = 0

    /// Folds `value` into a global the optimizer must assume is read.
    @inline(never)
    public static func keep(_ value: Int) {
        total &+= value
    }

    /// Keeps the length of `text`, which therefore has to be built.
    public static func keep(_ text: String) {
        keep(text.utf8.count)
    }
}
