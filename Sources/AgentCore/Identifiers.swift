/// An agent's id: its type and a key (`type/key`).
public struct AgentID: Hashable, Sendable, CustomStringConvertible {
    public var type: String
    public var key: String

    public init(type: String, key: String) {
        self.type = type
        self.key = key
    }

    /// Parses `type/key` (the key may contain `/`).
    public init?(_ text: some StringProtocol) {
        guard let slash = text.firstIndex(of: "/") else { return nil }
        type = String(text[..<slash])
        key = String(text[text.index(after: slash)...])
        guard AgentID.isValidType(type) else { return nil }
    }

    public var description: String { "\(type)/\(key)" }

    /// AutoGen's rule for agent types: one or more word characters, `-` or `.`
    /// (Python's `^[\w\-\.]+\Z`).
    public static func isValidType(_ type: String) -> Bool {
        !type.isEmpty && type.unicodeScalars.allSatisfy { isWordCharacter($0) || $0 == "-" || $0 == "." }
    }
}

/// A topic's id: its type and source (`type/source`).
public struct TopicID: Hashable, Sendable, CustomStringConvertible {
    public var type: String
    public var source: String

    public init(type: String, source: String) {
        self.type = type
        self.source = source
    }

    public var description: String { "\(type)/\(source)" }

    /// AutoGen's rule for topic types: one or more word characters, `-`, `.`, `:` or `=`
    /// (Python's `^[\w\-\.\:\=]+\Z`).
    public static func isValidType(_ type: String) -> Bool {
        !type.isEmpty && type.unicodeScalars.allSatisfy {
            isWordCharacter($0) || $0 == "-" || $0 == "." || $0 == ":" || $0 == "="
        }
    }
}

/// Python's `\w` for `str` patterns: Unicode letters, digits and the underscore.
func isWordCharacter(_ scalar: Unicode.Scalar) -> Bool {
    if scalar.isASCII {
        let value = scalar.value
        return (value >= 0x30 && value <= 0x39) || (value >= 0x41 && value <= 0x5a)
            || (value >= 0x61 && value <= 0x7a) || value == 0x5f
    }
    let properties = scalar.properties
    return properties.isAlphabetic || properties.numericType != nil || properties.generalCategory == .connectorPunctuation
}
