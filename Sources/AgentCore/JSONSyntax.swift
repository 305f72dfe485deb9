/// Whether bytes are one JSON text as RFC 8259 defines it — UTF-8, any value at the top
/// (`{…}`, `[…]`, a string, a number, `true`, `false`, `null`), whitespace around it — checked
/// without building the value, and where they stop being one.
///
/// Strict, like Python's `json.loads` without its extensions: no byte order mark, no comments,
/// no trailing commas, no `NaN`, no single quotes, no raw control characters in strings. Escaped
/// lone surrogates (`"\ud800"`) are accepted, as RFC 8259 and Python accept them. Nesting depth
/// is not limited (the check keeps its own stack, not the thread's).
///
/// ```swift
/// try JSONSyntax.validate(Array(#"{"count": 3}"#.utf8))   // fine
/// try JSONSyntax.validate(Array(#"{"count": 3,}"#.utf8))
/// // throws: line 1, column 13 (byte 12): expected a member name (a string) after ','
/// ```
public enum JSONSyntax {
    /// Where bytes stop being a JSON text, and why.
    public struct Error: Swift.Error, Sendable, Hashable, CustomStringConvertible {
        /// The offset of the offending byte (the byte count at the end of the text).
        public var offset: Int
        /// The line it is on, from 1 (lines end at `\n`).
        public var line: Int
        /// Its column on that line, from 1, in Unicode characters (scalars).
        public var column: Int
        /// What was expected there, or what is wrong.
        public var problem: String

        public var description: String { "line \(line), column \(column) (byte \(offset)): \(problem)" }
    }

    /// Checks that `bytes` are exactly one JSON text.
    /// - Throws: ``Error`` at the first byte where they are not.
    public static func validate(_ bytes: [UInt8]) throws(Error) {
        var checker = Checker(bytes)
        if let (offset, problem) = checker.run() {
            throw position(of: offset, in: bytes, problem: problem)
        }
    }

    /// Whether `bytes` are exactly one JSON text.
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        var checker = Checker(bytes)
        return checker.run() == nil
    }

    /// The line and column of `offset`.
    private static func position(of offset: Int, in bytes: [UInt8], problem: String) -> Error {
        var line = 1
        var column = 1
        for byte in bytes[..<min(offset, bytes.count)] {
            if byte == UInt8(ascii: "\n") {
                line += 1
                column = 1
            } else if byte & 0xC0 != 0x80 {  // not a UTF-8 continuation byte
                column += 1
            }
        }
        return Error(offset: offset, line: line, column: column, problem: problem)
    }

    /// The check itself: one pass, one explicit stack of open containers.
    private struct Checker {
        private enum Container { case object, array }
        /// What may come next.
        private enum Expectation {
            case value
            /// Right after `[`.
            case valueOrEnd
            /// Right after `{`.
            case nameOrEnd
            /// After `,` in an object.
            case name
            case colon
            /// After a value inside a container.
            case commaOrEnd
            /// After the top-level value.
            case end
        }

        private let bytes: [UInt8]
        private var index = 0
        private var stack: [Container] = []

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        /// Nil if the bytes are one JSON text, else the offset and the problem.
        mutating func run() -> (Int, String)? {
            var expecting = Expectation.value
            while true {
                skipWhitespace()
                guard index < bytes.count else {
                    if case .end = expecting { return nil }
                    return (index, bytes.isEmpty ? "the text is empty: expected a JSON value" : "the text ends early: \(describe(expecting))")
                }
                let byte = bytes[index]
                switch expecting {
                case .end:
                    return (index, "unexpected text after the JSON value")
                case .value, .valueOrEnd:
                    if case .valueOrEnd = expecting, byte == UInt8(ascii: "]") {
                        index += 1
                        stack.removeLast()
                        expecting = afterValue()
                        continue
                    }
                    switch byte {
                    case UInt8(ascii: "{"):
                        index += 1
                        stack.append(.object)
                        expecting = .nameOrEnd
                    case UInt8(ascii: "["):
                        index += 1
                        stack.append(.array)
                        expecting = .valueOrEnd
                    default:
                        if let problem = scalarValue() { return problem }
                        expecting = afterValue()
                    }
                case .nameOrEnd, .name:
                    if case .nameOrEnd = expecting, byte == UInt8(ascii: "}") {
                        index += 1
                        stack.removeLast()
                        expecting = afterValue()
                        continue
                    }
                    guard byte == UInt8(ascii: "\"") else { return (index, describe(expecting)) }
                    if let problem = string() { return problem }
                    expecting = .colon
                case .colon:
                    guard byte == UInt8(ascii: ":") else { return (index, describe(expecting)) }
                    index += 1
                    expecting = .value
                case .commaOrEnd:
                    let container = stack[stack.count - 1]
                    let close = container == .object ? UInt8(ascii: "}") : UInt8(ascii: "]")
                    if byte == close {
                        index += 1
                        stack.removeLast()
                        expecting = afterValue()
                    } else if byte == UInt8(ascii: ",") {
                        index += 1
                        expecting = container == .object ? .name : .value
                    } else {
                        return (index, describe(expecting))
                    }
                }
            }
        }

        private func afterValue() -> Expectation { stack.isEmpty ? .end : .commaOrEnd }

        private func describe(_ expectation: Expectation) -> String {
            switch expectation {
            case .value: "expected a value"
            case .valueOrEnd: "expected a value or ']'"
            case .nameOrEnd: "expected a member name (a string) or '}'"
            case .name: "expected a member name (a string) after ','"
            case .colon: "expected ':' after the member name"
            case .commaOrEnd: stack.last == .object ? "expected ',' or '}' after the member" : "expected ',' or ']' after the element"
            case .end: "expected the end of the text"
            }
        }

        private mutating func skipWhitespace() {
            while index < bytes.count {
                switch bytes[index] {
                case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): index += 1
                default: return
                }
            }
        }

        /// A string, number or literal at `index`.
        private mutating func scalarValue() -> (Int, String)? {
            switch bytes[index] {
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return number()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return (index, "expected a value")
            }
        }

        private mutating func literal(_ word: StaticString) -> (Int, String)? {
            let start = index
            let expected = word.withUTF8Buffer { Array($0) }
            for byte in expected {
                guard index < bytes.count, bytes[index] == byte else {
                    return (start, "expected a value ('\(word)'?)")
                }
                index += 1
            }
            return nil
        }

        /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
        private mutating func number() -> (Int, String)? {
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, isDigit(bytes[index]) else { return (index, "expected a digit in the number") }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
                if index < bytes.count, isDigit(bytes[index]) { return (index, "a number may not have a leading zero") }
            } else {
                skipDigits()
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard index < bytes.count, isDigit(bytes[index]) else { return (index, "expected a digit after the decimal point") }
                skipDigits()
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard index < bytes.count, isDigit(bytes[index]) else { return (index, "expected a digit in the exponent") }
                skipDigits()
            }
            return nil
        }

        private func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

        private mutating func skipDigits() {
            while index < bytes.count, isDigit(bytes[index]) { index += 1 }
        }

        /// A string starting at the `"` at `index`.
        private mutating func string() -> (Int, String)? {
            let start = index
            index += 1
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return nil
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { return (start, "the string is not closed") }
                    switch bytes[index] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                        UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        for _ in 0..<4 {
                            guard index < bytes.count, isHexDigit(bytes[index]) else {
                                return (index, "expected four hexadecimal digits after \\u")
                            }
                            index += 1
                        }
                    default:
                        return (index, "invalid escape in a string (valid: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)")
                    }
                case 0..<0x20:
                    return (index, "a control character (byte \(byte)) in a string must be escaped")
                case 0..<0x80:
                    index += 1
                default:
                    guard let length = utf8SequenceLength(at: index) else { return (index, "invalid UTF-8") }
                    index += length
                }
            }
            return (start, "the string is not closed")
        }

        private func isHexDigit(_ byte: UInt8) -> Bool {
            isDigit(byte) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
        }

        /// The length of the well-formed multi-byte UTF-8 sequence at `start` (Unicode's table
        /// 3-7: no overlong forms, no surrogates, nothing past U+10FFFF), or nil.
        private func utf8SequenceLength(at start: Int) -> Int? {
            let lead = bytes[start]
            let length: Int
            var secondRange: ClosedRange<UInt8> = 0x80...0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; secondRange = 0xA0...0xBF
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; secondRange = 0x80...0x9F
            case 0xF0: length = 4; secondRange = 0x90...0xBF
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; secondRange = 0x80...0x8F
            default: return nil
            }
            guard start + length <= bytes.count, secondRange.contains(bytes[start + 1]) else { return nil }
            for offset in 2..<length where bytes[start + offset] & 0xC0 != 0x80 { return nil }
            return length
        }
    }
}
