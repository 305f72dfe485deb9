import AgentCore
import Testing

@Suite("StateText: snapshot bytes as the state protocol's text, and back")
struct StateTextTests {
    @Test("a snapshot that is one JSON text travels unchanged", arguments: [
        #"{"count": 3}"#, #"  {"nested": {"list": [1, 2.5e-3, true, null, "Ада ✓ \u00e9 \ud83d\ude00"]}}  "#,
        "[]", #""just a string""#, "42", "-0.5E+2", "true", "null", "\n{}\n",
    ])
    func json(text: String) throws {
        let snapshot = Array(text.utf8)
        #expect(StateText.text(for: snapshot) == text)
        #expect(try StateText.snapshot(from: text) == snapshot)
    }

    @Test("any other snapshot goes as a base64 data URL, and comes back byte for byte", arguments: [
        [1, 5, 0, 0, 0, 0, 0, 0, 0],  // echo's state: version 1, count 5
        [],  // nothing is not a JSON text
        Array("not json".utf8), Array(#"{"a": 1,}"#.utf8), Array("\u{FEFF}{}".utf8),  // a byte order mark
        Array("{}\0".utf8), [0x7B, 0xFF, 0x7D], Array(0...255), [0xFB], [0xFB, 0xFF],
    ] as [[UInt8]])
    func binary(snapshot: [UInt8]) throws {
        let text = StateText.text(for: snapshot)
        #expect(text.hasPrefix("data:application/octet-stream;base64,"))
        #expect(try StateText.snapshot(from: text) == snapshot)
    }

    @Test("the data URL's base64 is the standard alphabet with padding (RFC 4648 test vectors)", arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func base64Vectors(plain: String, encoded: String) throws {
        // "foo" and the like are not JSON, so they are written as data URLs.
        #expect(StateText.text(for: Array(plain.utf8)) == "data:application/octet-stream;base64,\(encoded)")
        #expect(try StateText.snapshot(from: "data:application/octet-stream;base64,\(encoded)") == Array(plain.utf8))
        #expect(StateText.text(for: [0xFB, 0xEF, 0xFF]) == "data:application/octet-stream;base64,++//")
    }

    @Test("any media type is accepted on load, as long as the URL is base64")
    func otherMediaTypes() throws {
        #expect(try StateText.snapshot(from: "data:;base64,AQI=") == [1, 2])
        #expect(try StateText.snapshot(from: "data:application/json;charset=utf-8;base64,e30=") == Array("{}".utf8))
    }

    @Test("a state not beginning with 'data:' is taken as its UTF-8 bytes, unchecked", arguments: [
        "not json at all", " data:,x", "DATA:x", "", "{\"half\": ",
    ])
    func plainText(text: String) throws {
        #expect(try StateText.snapshot(from: text) == Array(text.utf8))
    }

    @Test("a malformed data URL is refused, saying what is wrong", arguments: [
        ("data:application/octet-stream;base64", "no ',' before its data"),
        ("data:,hello", "not a base64 data URL"),
        ("data:text/plain;base64x,AAAA", "not a base64 data URL"),
        ("data:;base64,AQI", "3 characters long, not a multiple of 4"),
        ("data:;base64,AQ I", "' ' at character 3, which is not a base64 character"),
        ("data:;base64,AQ-_", "'-' at character 3, which is not a base64 character"),
        ("data:;base64,A=I=", "'=' padding at character 2, before its end"),
        ("data:;base64,AQ==AQ==", "'=' padding at character 3, before its end"),
        ("data:;base64,AQ=I", "'I' after its '=' padding, at character 4"),
        ("data:;base64,AR==", "nonzero bits before its padding at character 2"),
        ("data:;base64,AQN=", "nonzero bits before its padding at character 3"),
        ("data:;base64,AQ\u{e9}", "the byte 195 at character 3"),
    ])
    func malformed(text: String, problem: String) {
        let error = #expect(throws: StateText.MalformedDataURL.self) { try StateText.snapshot(from: text) }
        #expect(error?.problem.contains(problem) == true, "\(error?.problem ?? "no error")")
        #expect(error?.description.contains("data:application/octet-stream;base64,<base64>") == true)
    }
}
