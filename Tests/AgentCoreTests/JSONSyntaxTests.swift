import AgentCore
import Testing

@Suite("JSONSyntax: one JSON text, RFC 8259, and where it stops being one")
struct JSONSyntaxTests {
    @Test("valid JSON texts", arguments: [
        "{}", "[]", "0", "-0", "1.5e10", "-12.25E-3", "3E+2", #""""#, #""\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00""#,
        "true", "false", "null", " \t\r\n[ 1 , { \"a\" : [ ] } ] \n", #"{"a":{"b":{"c":[[[]]]}}}"#,
        #""\ud800""#,  // an escaped lone surrogate: RFC 8259 and Python accept it
        "\"Ада ✓ 😀\"", "{\"\":0}",
    ])
    func valid(text: String) throws {
        try JSONSyntax.validate(Array(text.utf8))
        #expect(JSONSyntax.isValid(Array(text.utf8)))
    }

    @Test("invalid JSON texts are refused at the right place, saying why", arguments: [
        ("", 1, 1, 0, "the text is empty"),
        ("   ", 1, 4, 3, "the text ends early: expected a value"),
        ("{", 1, 2, 1, "ends early: expected a member name (a string) or '}'"),
        (#"{"count": 3,}"#, 1, 13, 12, "expected a member name (a string) after ','"),
        ("[1, 2,]", 1, 7, 6, "expected a value"),
        ("[1 2]", 1, 4, 3, "expected ',' or ']' after the element"),
        (#"{"a" 1}"#, 1, 6, 5, "expected ':' after the member name"),
        (#"{"a": 1 "b": 2}"#, 1, 9, 8, "expected ',' or '}' after the member"),
        ("{}\n{}", 2, 1, 3, "unexpected text after the JSON value"),
        ("{\n  \"a\": tru\n}", 2, 8, 9, "expected a value ('true'?)"),
        ("NaN", 1, 1, 0, "expected a value"),
        ("01", 1, 2, 1, "leading zero"),
        ("1.", 1, 3, 2, "expected a digit after the decimal point"),
        ("1e", 1, 3, 2, "expected a digit in the exponent"),
        ("-", 1, 2, 1, "expected a digit in the number"),
        ("'a'", 1, 1, 0, "expected a value"),
        (#"["abc"#, 1, 2, 1, "the string is not closed"),
        ("[\"a\tb\"]", 1, 4, 3, "a control character (byte 9) in a string must be escaped"),
        (#"["\x"]"#, 1, 4, 3, "invalid escape"),
        (#"["\u12G4"]"#, 1, 7, 6, "four hexadecimal digits"),
        ("\u{FEFF}{}", 1, 1, 0, "expected a value"),
        ("[\"Ада\" x]", 1, 8, 10, "expected ',' or ']'"),  // columns count characters, offsets bytes
        ("{} // comment", 1, 4, 3, "unexpected text"),
    ])
    func invalid(text: String, line: Int, column: Int, offset: Int, problem: String) {
        let error = #expect(throws: JSONSyntax.Error.self) { try JSONSyntax.validate(Array(text.utf8)) }
        #expect(error?.line == line)
        #expect(error?.column == column)
        #expect(error?.offset == offset)
        #expect(error?.problem.contains(problem) == true, "\(error?.problem ?? "no error")")
        #expect(error?.description.hasPrefix("line \(line), column \(column) (byte \(offset)): ") == true)
        #expect(!JSONSyntax.isValid(Array(text.utf8)))
    }

    @Test("invalid UTF-8 inside a string is refused", arguments: [
        [0x22, 0xC0, 0x80, 0x22],  // an overlong NUL
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // an encoded surrogate
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // past U+10FFFF
        [0x22, 0xE2, 0x82, 0x22],  // a sequence cut short
        [0x22, 0x80, 0x22],  // a lone continuation byte
    ] as [[UInt8]])
    func invalidUTF8(bytes: [UInt8]) {
        let error = #expect(throws: JSONSyntax.Error.self) { try JSONSyntax.validate(bytes) }
        #expect(error?.problem == "invalid UTF-8")
        #expect(error?.offset == 1)
    }

    @Test("deep nesting is checked without recursion")
    func deepNesting() throws {
        let depth = 200_000
        try JSONSyntax.validate(Array(repeating: UInt8(ascii: "["), count: depth) + Array(repeating: UInt8(ascii: "]"), count: depth))
        #expect(!JSONSyntax.isValid(Array(repeating: UInt8(ascii: "["), count: depth)))
    }
}
