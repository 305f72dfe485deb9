import CoreMetrics

extension CoreMetrics.Timer {
    /// Records `duration` in nanoseconds (swift-metrics' `Metrics` module has the same as
    /// `record(duration:)`, but brings Foundation, which the lean host does not link).
    @inlinable
    public func recordDuration(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (nanoseconds, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        recordNanoseconds(overflow ? .max : nanoseconds &+ attoseconds / 1_000_000_000)
    }
}
