#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A message as it travels: its type name, content type and payload. (SPI for the SDK's own
/// message formats: what `AgentSDKProtobuf` hands to and gets from the SDK's raw handlers,
/// `publish` and `send`, so that the SDK's JSON path carries no generic format machinery and a
/// JSON-only plugin pays nothing for protobuf.)
@_spi(MessageFormats)
public struct EncodedMessage: Sendable {
    /// The message type name on the wire: the payload's `data_type` / `dataschema`.
    public let messageType: String
    /// The content type, without parameters in what the SDK hands out.
    public let contentType: String
    public let payload: Data

    public init(messageType: String, contentType: String, payload: Data) {
        self.messageType = messageType
        self.contentType = contentType
        self.payload = payload
    }
}
