/// The disable rule: a plugin version (by content hash) that crashes ``limit`` times within
/// ``window`` is disabled — its types are still registered, and every RPC to them is answered
/// with ``Disabled/reason`` — until a new version (another content hash) is dropped in.
public struct CrashLedger: Sendable {
    /// A disabled plugin version.
    public struct Disabled: Sendable, Equatable {
        public var pluginName: String
        public var contentHash: String
        /// What every RPC to its types is answered with (after "Agent type 'T' is not served: ").
        public var reason: String
    }

    public let limit: Int
    public let window: Duration
    /// Crash times by content hash, within the window.
    private var crashes: [String: [ContinuousClock.Instant]] = [:]
    /// By content hash.
    public private(set) var disabled: [String: Disabled] = [:]

    public init(limit: Int = 3, window: Duration = .seconds(60)) {
        self.limit = limit
        self.window = window
    }

    /// Counts a crash of the plugin version `contentHash`.
    /// - Returns: the crashes within the window so far (this one included), and the plugin's
    ///   ``Disabled`` entry when this crash disabled it.
    public mutating func recordCrash(
        pluginName: String, contentHash: String, signal: String, messageType: String, at now: ContinuousClock.Instant
    ) -> (count: Int, disabled: Disabled?) {
        var times = (crashes[contentHash] ?? []).filter { now - $0 < window }
        times.append(now)
        crashes[contentHash] = times
        guard times.count >= limit, disabled[contentHash] == nil else { return (times.count, nil) }
        let entry = Disabled(
            pluginName: pluginName, contentHash: contentHash,
            reason: "plugin \(pluginName) (content hash \(contentHash)) is disabled: it crashed \(times.count) times within \(Self.seconds(window)) (the last with \(signal) while handling '\(messageType)'). Drop in a new version of the plugin file to enable it again.")
        disabled[contentHash] = entry
        return (times.count, entry)
    }

    /// `60 s`.
    static func seconds(_ duration: Duration) -> String {
        let whole = duration.components.seconds
        return duration.components.attoseconds == 0 ? "\(whole) s" : "\(Double(whole) + Double(duration.components.attoseconds) / 1e18) s"
    }
}
