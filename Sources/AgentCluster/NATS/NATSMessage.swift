import CNATS
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A message a subscription received: copied out of nats.c's message, which is gone by the time
/// a handler sees this.
public struct NATSMessage: Sendable {
    public var subject: String
    /// Where the sender wants an answer (``NATSConnection/publish(_:payload:replyTo:headers:)``).
    public var replySubject: String?
    public var payload: [UInt8]
    public var headers: NATSHeaders
    /// The server's own answer to a request that found no subscriber on its subject (status
    /// 503, no payload), which arrives on the request's reply subject.
    public var isNoResponders: Bool

    public init(
        subject: String, replySubject: String? = nil, payload: [UInt8], headers: NATSHeaders = NATSHeaders(),
        isNoResponders: Bool = false
    ) {
        self.subject = subject
        self.replySubject = replySubject
        self.payload = payload
        self.headers = headers
        self.isNoResponders = isNoResponders
    }

    /// Copies `message` (a `natsMsg`, which the caller still owns).
    init(copying message: OpaquePointer) {
        subject = String(cString: natsMsg_GetSubject(message))
        replySubject = natsMsg_GetReply(message).map { String(cString: $0) }
        let length = Int(natsMsg_GetDataLength(message))
        if length > 0, let data = natsMsg_GetData(message) {
            payload = [UInt8](UnsafeRawBufferPointer(start: data, count: length))
        } else {
            payload = []
        }
        isNoResponders = natsMsg_IsNoResponders(message)
        headers = NATSHeaders()
        // A message without headers answers NATS_NOT_FOUND without touching the error stack.
        var names: UnsafeMutablePointer<UnsafePointer<CChar>?>?
        var count: Int32 = 0
        guard natsMsgHeader_Keys(message, &names, &count) == NATS_OK, let names else { return }
        // nats.c allocates the arrays of pointers for the caller to free; the strings stay its own.
        defer { free(UnsafeMutableRawPointer(mutating: names)) }
        for index in 0..<Int(count) {
            guard let name = names[index] else { continue }
            var values: UnsafeMutablePointer<UnsafePointer<CChar>?>?
            var valueCount: Int32 = 0
            guard natsMsgHeader_Values(message, name, &values, &valueCount) == NATS_OK, let values else { continue }
            defer { free(UnsafeMutableRawPointer(mutating: values)) }
            let nameText = String(cString: name)
            for valueIndex in 0..<Int(valueCount) {
                headers.add(nameText, values[valueIndex].map { String(cString: $0) } ?? "")
            }
        }
    }
}
