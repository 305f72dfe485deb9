import Foundation
import Testing

@testable import AgentSDK

@Suite("JSON messages, AutoGen's way")
struct MessageCodingTests {
    enum Outer {
        struct Inner: AgentMessage { var x: Int }
    }

    struct Renamed: AgentMessage {
        static var messageType: String { "PythonName" }
        var x: Int
    }

    struct Optionals: AgentMessage {
        var name: String
        var nickname: String?
    }

    @Test("the message type is the bare type name, as AutoGen's data_type")
    func bareTypeName() {
        #expect(Greeting.messageType == "Greeting")
        #expect(Outer.Inner.messageType == "Inner")
        #expect(Renamed.messageType == "PythonName")
        #expect(Greeting.contentType == "application/json")
    }

    @Test("a message encodes as json.dumps(asdict(m)) would, and decodes what Python sends")
    func pythonShape() throws {
        let data = try MessageCoding.encode(Greeting(name: "Ada / Lovelace"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: String])
        #expect(object == ["name": "Ada / Lovelace"])
        #expect(!String(decoding: data, as: UTF8.self).contains("\\/"))
        // Python's json.dumps puts a space after ':' and ','.
        let decoded = try MessageCoding.decode(Greeting.self, from: Data(#"{"name": "Ada"}"#.utf8))
        #expect(decoded.name == "Ada")
    }

    @Test("an unknown key is refused, naming the key and the message type")
    func unknownKey() throws {
        let error = try #require(throws: AgentError.self) {
            try MessageCoding.decode(Greeting.self, from: Data(#"{"name": "Ada", "mood": "happy"}"#.utf8))
        }
        #expect(error.code == .invalidArgument)
        #expect(error.message.contains("Greeting"))
        #expect(error.message.contains(#""mood""#))
    }

    @Test("an unknown key is refused even after valid messages of the type were seen")
    func unknownKeyAfterKnown() throws {
        _ = try MessageCoding.decode(Optionals.self, from: Data(#"{"name": "a", "nickname": "b"}"#.utf8))
        _ = try MessageCoding.decode(Optionals.self, from: Data(#"{"name": "a"}"#.utf8))
        #expect(throws: AgentError.self) {
            try MessageCoding.decode(Optionals.self, from: Data(#"{"name": "a", "nick": "b"}"#.utf8))
        }
    }

    @Test("optional properties may be absent, null or present (Python's None is null)")
    func optionals() throws {
        for json in [#"{"name": "a"}"#, #"{"name": "a", "nickname": null}"#, #"{"name": "a", "nickname": "b"}"#] {
            let decoded = try MessageCoding.decode(Optionals.self, from: Data(json.utf8))
            #expect(decoded.name == "a")
        }
    }

    @Test("a message that accepts unknown keys ignores them, as pydantic does")
    func lenient() throws {
        let decoded = try MessageCoding.decode(Lenient.self, from: Data(#"{"value": 3, "extra": [1, 2]}"#.utf8))
        #expect(decoded.value == 3)
    }

    @Test("malformed JSON is an invalid argument naming the message type")
    func malformed() throws {
        let error = try #require(throws: AgentError.self) {
            try MessageCoding.decode(Greeting.self, from: Data(#"{"name": "Ada""#.utf8))
        }
        #expect(error.code == .invalidArgument)
        #expect(error.message.hasPrefix("cannot decode Greeting from its JSON payload: "))
        #expect(error.message.hasSuffix(#"(payload: {"name": "Ada")"#))
    }

    @Test("anything but a JSON object is refused, even for a message without properties (cls(**json))",
          arguments: [("[]", "a JSON array"), ("[1]", "a JSON array"), ("null", "null"), ("true", "a JSON boolean"),
                      ("0", "a JSON number"), (#""x""#, "a JSON string")])
    func notAnObject(json: String, kind: String) throws {
        for decode in [{ _ = try MessageCoding.decode(Whoami.self, from: $0) },
                       { _ = try MessageCoding.decode(Greeting.self, from: $0) },
                       { _ = try MessageCoding.decode(Lenient.self, from: $0) }] as [(Data) throws -> Void] {
            let error = try #require(throws: AgentError.self) { try decode(Data(json.utf8)) }
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("the payload is \(kind), not a JSON object"), "\(error.message)")
        }
        _ = try MessageCoding.decode(Whoami.self, from: Data("{}".utf8))
    }

    @Test("a missing or mistyped key is named")
    func missingAndMistyped() throws {
        let missing = try #require(throws: AgentError.self) {
            try MessageCoding.decode(Greeting.self, from: Data("{}".utf8))
        }
        #expect(missing.message.contains(#"the key "name" is missing"#))
        let mistyped = try #require(throws: AgentError.self) {
            try MessageCoding.decode(Greeting.self, from: Data(#"{"name": 42}"#.utf8))
        }
        #expect(mistyped.message.contains(#""name" is not String"#))
    }

    @Test("content types compare without parameters; an empty one is JSON")
    func contentTypes() {
        #expect(ContentType.canonical("application/json") == "application/json")
        #expect(ContentType.canonical("application/json; charset=utf-8") == "application/json")
        #expect(ContentType.canonical("") == "application/json")
        #expect(ContentType.canonical("application/x-protobuf") == "application/x-protobuf")
    }
}
