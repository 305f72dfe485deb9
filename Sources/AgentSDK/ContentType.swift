/// The content types the SDK compares: a handler lists the ones it reads (`AgentSDKProtobuf`'s
/// name theirs), and the SDK matches a message's against them, made canonical.
enum ContentType {
    /// `application/json`: every ``AgentMessage``, and what AutoGen's `send_message` always sends.
    static let json = "application/json"

    /// A content type without its parameters; an empty one (a sender that did not say) is JSON,
    /// as the runtime has always taken it.
    static func canonical(_ contentType: String) -> String {
        if contentType.isEmpty { return json }
        guard let parameters = contentType.firstIndex(of: ";") else { return contentType }
        return String(contentType[..<parameters])
    }
}
