import CGRPC
#if canImport(Glibc)
import Glibc
#endif

/// Channel arguments (`grpc.*` keys of the C core, all integers here) for a server or a channel.
struct ChannelArguments {
    var entries: [(String, Int32)] = []

    mutating func set(_ key: String, _ value: Int) {
        entries.append((key, Int32(clamping: value)))
    }

    /// Calls `body` with a C `grpc_channel_args` valid for the duration of the call (the C
    /// core copies what it keeps).
    func withCArguments<Result>(_ body: (UnsafePointer<grpc_channel_args>) throws -> Result) rethrows -> Result {
        var keys: [UnsafeMutablePointer<CChar>] = []
        defer { keys.forEach { free($0) } }
        var args: [grpc_arg] = entries.map { key, value in
            var arg = grpc_arg()
            let cKey = strdup(key)!
            keys.append(cKey)
            arg.key = cKey
            arg.type = GRPC_ARG_INTEGER
            arg.value.integer = value
            return arg
        }
        return try args.withUnsafeMutableBufferPointer { buffer in
            var channelArgs = grpc_channel_args(num_args: buffer.count, args: buffer.baseAddress)
            return try body(&channelArgs)
        }
    }
}
