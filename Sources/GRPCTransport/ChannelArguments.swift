import CGRPC
#if canImport(Glibc)
import Glibc
#endif

/// Channel arguments (`grpc.*` keys of the C core) for a server or a channel.
struct ChannelArguments {
    enum Value {
        case integer(Int32)
        case string(String)
    }
    var entries: [(String, Value)] = []

    mutating func set(_ key: String, _ value: Int) {
        entries.append((key, .integer(Int32(clamping: value))))
    }

    mutating func set(_ key: String, _ value: String) {
        entries.append((key, .string(value)))
    }

    /// Calls `body` with a C `grpc_channel_args` valid for the duration of the call (the C
    /// core copies what it keeps).
    func withCArguments<Result>(_ body: (UnsafePointer<grpc_channel_args>) throws -> Result) rethrows -> Result {
        var owned: [UnsafeMutablePointer<CChar>] = []
        defer { owned.forEach { free($0) } }
        var args: [grpc_arg] = entries.map { key, value in
            var arg = grpc_arg()
            let cKey = strdup(key)!
            owned.append(cKey)
            arg.key = cKey
            switch value {
            case .integer(let integer):
                arg.type = GRPC_ARG_INTEGER
                arg.value.integer = integer
            case .string(let string):
                let cValue = strdup(string)!
                owned.append(cValue)
                arg.type = GRPC_ARG_STRING
                arg.value.string = cValue
            }
            return arg
        }
        return try args.withUnsafeMutableBufferPointer { buffer in
            var channelArgs = grpc_channel_args(num_args: buffer.count, args: buffer.baseAddress)
            return try body(&channelArgs)
        }
    }
}
