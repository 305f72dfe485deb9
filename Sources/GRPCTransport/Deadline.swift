import CGRPC

/// When a call must be over. The C core fails a call that outlives its deadline with
/// `DEADLINE_EXCEEDED`, on both sides.
public struct Deadline: Sendable, Hashable {
    enum Value: Hashable {
        case never
        case afterMilliseconds(Int64)
    }
    let value: Value

    /// No deadline.
    public static let never = Deadline(value: .never)

    /// A deadline `duration` from when the call starts.
    public static func after(_ duration: Duration) -> Deadline {
        let (seconds, attoseconds) = duration.components
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        return Deadline(value: .afterMilliseconds(max(0, milliseconds)))
    }

    var timespec: gpr_timespec {
        switch value {
        case .never: return cgrpc_infinite_future()
        case .afterMilliseconds(let ms): return cgrpc_deadline_after_ms(ms)
        }
    }
}
