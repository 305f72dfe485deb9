import AgentCore
import Testing

@Suite("JSONValue: JSON written by hand, Foundation-free")
struct JSONValueTests {
    @Test("objects keep their order; arrays, numbers, booleans and null are written compactly")
    func compact() {
        let value: JSONValue = .object([
            ("name", "echo"), ("count", 2), ("ratio", .double(0.25)), ("shared", false), ("host", .null),
            ("keys", .array(["a", "b"])), ("empty", .object([])), ("nothing", .array([])),
        ])
        #expect(value.text == #"{"name":"echo","count":2,"ratio":0.25,"shared":false,"host":null,"keys":["a","b"],"empty":{},"nothing":[]}"#)
        #expect(JSONSyntax.isValid(Array(value.text.utf8)))
    }

    @Test("strings escape quotes, backslashes and every control character; other text stays UTF-8")
    func escaping() {
        let value: JSONValue = .string("say \"hi\" C:\\dir\nnext\r\t\u{08}\u{0C}\u{00}\u{1F}\u{7F} é ✓ 😀")
        #expect(value.text == #""say \"hi\" C:\\dir\nnext\r\t\b\f\u0000\u001f"# + "\u{7F} é ✓ 😀\"")
        #expect(JSONSyntax.isValid(Array(value.text.utf8)))
    }

    @Test("a double that is not finite is written as null; others in their shortest form")
    func doubles() {
        #expect(JSONValue.double(.infinity).text == "null")
        #expect(JSONValue.double(.nan).text == "null")
        #expect(JSONValue.double(12.345).text == "12.345")
        #expect(JSONSyntax.isValid(Array(JSONValue.double(1e-7).text.utf8)))
        #expect(JSONSyntax.isValid(Array(JSONValue.double(5e20).text.utf8)))
    }

    @Test("keys are escaped like values; members are found by key")
    func keys() {
        let value: JSONValue = .object([("a\"b", 1), ("n", .object([("m", true)]))])
        #expect(value.text == #"{"a\"b":1,"n":{"m":true}}"#)
        #expect(value["n"]?["m"] == true)
        #expect(value["missing"] == nil)
    }
}
