/// The content types the SDK reads and writes, and how it compares them. (SPI for the SDK's
/// own message formats: `AgentSDKProtobuf` uses it.)
@_spi(MessageFormats)
public enum ContentType {
    /// `application/json`: every ``AgentMessage``, and what AutoGen's `send_message` always sends.
    public static let json = "application/json"
    /// `application/x-protobuf`: AutoGen's protobuf payloads.
    public static let protobuf = "application/x-protobuf"

    /// A content type as handlers list it: without parameters or surrounding spaces; an empty
    /// one (a sender that did not say) is JSON, as the runtime has always taken it.
    public static func canonical(_ contentType: String) -> String {
        var bare = contentType.prefix { $0 != ";" }
        while let first = bare.first, first == " " || first == "\t" { bare.removeFirst() }
        while let last = bare.last, last == " " || last == "\t" { bare.removeLast() }
        return bare.isEmpty ? json : String(bare)
    }
}
