/// A message agents exchange as JSON: an AutoGen dataclass (or pydantic model) in Swift.
///
/// Declare a `Codable` struct whose stored properties are the keys of the JSON object:
///
/// ```swift
/// struct Greeting: AgentMessage {
///     var name: String
/// }
/// ```
///
/// On the wire it travels as `{"name":"Ada"}` with the message type (AutoGen's `data_type`)
/// `"Greeting"` and the content type `application/json` — exactly what AutoGen's Python runtime
/// sends and expects for
///
/// ```python
/// @dataclass
/// class Greeting:
///     name: str
/// ```
///
/// Decoding is as strict as Python's dataclass decoding: a JSON key the type has no property for
/// is an error (see ``acceptsUnknownKeys``). Nested values are decoded as `Codable` decodes them.
public protocol AgentMessage: Codable, Sendable {
    /// The message type name on the wire: the payload's `data_type` / `dataschema`.
    ///
    /// Defaults to the bare type name (`"Greeting"`, never `"MyPlugin.Greeting"`), AutoGen's
    /// rule for JSON messages. Override it when the Python class has another name.
    static var messageType: String { get }

    /// Whether decoding ignores JSON keys the type has no property for.
    ///
    /// `false` by default, as AutoGen rejects unknown keys for dataclasses. Return `true` for a
    /// message whose sender may add fields the Swift side does not know yet (pydantic models
    /// ignore extra keys by default).
    static var acceptsUnknownKeys: Bool { get }
}

extension AgentMessage {
    public static var messageType: String { String(describing: Self.self) }

    public static var acceptsUnknownKeys: Bool { false }

    /// The content type of every ``AgentMessage`` on the wire: `application/json`.
    public static var contentType: String { ContentType.json }
}
