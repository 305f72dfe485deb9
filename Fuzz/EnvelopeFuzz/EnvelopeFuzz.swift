import ProtoWire
import FuzzSupport

/// The fuzz target for what a peer's bytes meet on the data and control channels: one input
/// is read the ways the host and the runtime read an `agents.Message`, and as each
/// control-plane message.
///
/// - The host's per-message path (``EnvelopeFuzz/checkHostPath(_:)``): ``Envelope/parse(_:)``,
///   then ``Envelope/replacingRequestID(in:messageField:body:with:)`` and
///   ``Envelope/errorResponse(requestID:error:)`` as `DataChannel` uses them.
/// - The control plane (``EnvelopeFuzz/checkControlPlane(_:)``): ``ControlPlaneCodec``'s
///   decoders (protobuf-c) of the registration requests and the `ControlMessage` header, as
///   the host reads them, and of the `GetSubscriptionsResponse`, as the runtime reads it.
/// - The runtime's decode (``EnvelopeFuzz/checkRuntimePath(_:host:)``): protobuf-c's
///   `agents__message__unpack`, the walk `IncomingMessage` makes over the result, and
///   `agents__message__free_unpacked`. (`IncomingMessage` is internal to AgentRuntime, so the
///   target repeats its walk rather than calling it.) Where the host's view parsed too, the two
///   must agree on the kind and the routing fields.
///
/// A broken property traps with a `precondition` message, which libFuzzer reports as a crash.
/// Run by `scripts/fuzz`; corpus in `Fuzz/Corpus/envelope` (made by `Fuzz/Corpus/generate.py`).
enum EnvelopeFuzz {
    static func run(_ bytes: UnsafeRawBufferPointer) {
        let envelope = checkHostPath(bytes)
        checkControlPlane(bytes)
        checkRuntimePath(bytes, host: envelope)
    }
}

/// libFuzzer's entry point (and `CorpusReplay`'s, through ``EnvelopeFuzz/run(_:)``).
@_cdecl("LLVMFuzzerTestOneInput")
public func envelopeFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    EnvelopeFuzz.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

#if !LIBFUZZER
@main
extension EnvelopeFuzz {
    static func main() { CorpusReplay.main(target: "EnvelopeFuzz", run: EnvelopeFuzz.run) }
}
#endif
