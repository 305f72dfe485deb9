/// A JSON value built by hand and written as compact RFC 8259 text, for the parts of agentd that
/// link no Foundation (the host, `agentd-host`'s log lines): the host's status, a runtime's
/// status, JSON log lines.
///
/// Objects keep their members in the order given, so that output is stable: a reader can rely
/// on the keys, and a person reading it sees them in the order they were written.
///
/// ```swift
/// let value: JSONValue = .object([("name", "echo"), ("count", 2), ("keys", .array(["a", "b"]))])
/// value.text   // {"name":"echo","count":2,"keys":["a","b"]}
/// ```
public indirect enum JSONValue: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByBooleanLiteral
{
    case string(String)
    case int(Int)
    /// Written in its shortest exact form; a value that is not finite is written as `null`.
    case double(Double)
    case bool(Bool)
    case null
    case array([JSONValue])
    /// Members in the order they are written.
    case object([(key: String, value: JSONValue)])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }

    /// The value as compact JSON text (no whitespace between tokens, no newline).
    public var text: String {
        var text = ""
        write(to: &text)
        return text
    }

    /// Appends the value's compact JSON text to `text`.
    public func write(to text: inout String) {
        switch self {
        case .string(let string): Self.writeString(string, to: &text)
        case .int(let number): text += String(number)
        case .double(let number): text += number.isFinite ? "\(number)" : "null"
        case .bool(let flag): text += flag ? "true" : "false"
        case .null: text += "null"
        case .array(let elements):
            text += "["
            for (index, element) in elements.enumerated() {
                if index > 0 { text += "," }
                element.write(to: &text)
            }
            text += "]"
        case .object(let members):
            text += "{"
            for (index, member) in members.enumerated() {
                if index > 0 { text += "," }
                Self.writeString(member.key, to: &text)
                text += ":"
                member.value.write(to: &text)
            }
            text += "}"
        }
    }

    /// Appends `string` as a JSON string: in quotes, with `"` and `\` escaped, and every control
    /// character (U+0000 to U+001F) escaped — as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`. Other
    /// characters, non-ASCII ones included, are written as they are (UTF-8).
    public static func writeString(_ string: String, to text: inout String) {
        text += "\""
        var plainStart = string.unicodeScalars.startIndex
        var index = plainStart
        let scalars = string.unicodeScalars
        while index < scalars.endIndex {
            let scalar = scalars[index]
            let escape: String? = switch scalar {
            case "\"": "\\\""
            case "\\": "\\\\"
            case "\n": "\\n"
            case "\r": "\\r"
            case "\t": "\\t"
            case "\u{08}": "\\b"
            case "\u{0C}": "\\f"
            default: scalar.value < 0x20 ? "\\u00" + hexDigits(scalar.value) : nil
            }
            if let escape {
                text.unicodeScalars.append(contentsOf: scalars[plainStart..<index])
                text += escape
                plainStart = scalars.index(after: index)
            }
            index = scalars.index(after: index)
        }
        text.unicodeScalars.append(contentsOf: scalars[plainStart..<scalars.endIndex])
        text += "\""
    }

    /// Two hexadecimal digits of a byte value.
    private static func hexDigits(_ value: UInt32) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(value >> 4) & 0xf], digits[Int(value) & 0xf]])
    }

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        lhs.text == rhs.text
    }
}

extension JSONValue {
    /// An object's member named `key` (the first of that name), or nil.
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }
}
