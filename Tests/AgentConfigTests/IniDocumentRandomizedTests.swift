import AgentConfig
import Testing

/// Properties that must hold for any input, checked on inputs from a seeded generator so that a
/// failure is reproducible: print the seed and case number, rerun, and the same bytes come back.
@Suite("IniDocument on random input")
struct IniDocumentRandomizedTests {
    static let validFile = Array("""
        ; agentd configuration
        [runtime]
        host = 127.0.0.1:50051   ; connect here
        rpc_timeout = 2.5
        workers = 4
        client_id = "worker \\"one\\" ; #"

        [host]
        listen = [::1]:0
        max_message_bytes = 4 MiB
        rpc_timeout = 60

        [plugins]
        directory = ../plugins

        [log]
        level = debug

        [plugin.greeter]
        greeting = "Hello\\tworld\\n"
        empty =
        """.utf8)

    /// Bytes that mean something to the parser, plus UTF-8 and non-UTF-8 bytes.
    static let interestingBytes: [UInt8] =
        Array("[]=;#\"\\ \t\n\r.:-_abcnt0123456789plugin.runtime".utf8)
        + [0x00, 0x01, 0x1B, 0x7F, 0x80, 0xBF, 0xC3, 0xA9, 0xE2, 0x9C, 0x93, 0xED, 0xA0, 0xF0, 0xFE, 0xFF]

    @Test("any bytes either parse or throw a located ConfigurationError; nothing traps")
    func neverCrashes() throws {
        var random = SplitMix64(seed: 0x5EED_A6E7_D0C0_F1C5)
        #expect(try RuntimeConfiguration.parse(bytes: Self.validFile, path: "valid.ini").workers == 4)
        var accepted = 0
        var codes = Set<ConfigurationError.Code>()
        for index in 0..<5_000 {
            let bytes: [UInt8]
            switch index % 3 {
            case 0: bytes = Self.randomBytes(&random)
            default: bytes = Self.mutated(Self.validFile, &random)
            }
            switch checkInvariants(bytes, case: index) {
            case .success: accepted += 1
            case .failure(let error): codes.insert(error.code)
            }
        }
        // The inputs are only worth something if they reach both outcomes and many errors.
        #expect(accepted > 100)
        #expect(codes.count >= 10, "codes reached: \(codes)")
    }

    @Test("a document written back as INI parses to the same document")
    func roundTrip() throws {
        var random = SplitMix64(seed: 42)
        for index in 0..<500 {
            let document = Self.randomDocument(&random)
            let text = Self.render(document)
            let reparsed = try IniDocument.parse(text: text, path: "round-trip.ini")
            #expect(reparsed == document, "case \(index):\n\(text)")
        }
    }

    // MARK: - Properties

    /// Checks what any outcome must satisfy; returns the outcome of the full schema check.
    @discardableResult
    private func checkInvariants(_ bytes: [UInt8], case index: Int) -> Result<RuntimeConfiguration, ConfigurationError> {
        let lineCount = bytes.split(separator: 0x0A, omittingEmptySubsequences: false).count
        do {
            let document = try IniDocument.parse(bytes: bytes, path: "fuzz.ini")
            #expect(Set(document.sections.map(\.name)).count == document.sections.count, "case \(index)")
            for section in document.sections {
                #expect(!section.name.isEmpty && (1...lineCount).contains(section.line), "case \(index)")
                #expect(Set(section.entries.map(\.key)).count == section.entries.count, "case \(index)")
                for entry in section.entries {
                    #expect(!entry.key.isEmpty && entry.section == section.name, "case \(index)")
                    #expect(entry.line > section.line && entry.line <= lineCount, "case \(index)")
                    #expect(entry.path == "fuzz.ini", "case \(index)")
                }
            }
        } catch {
            checkLocated(error, lineCount: lineCount, case: index)
        }
        do {
            return .success(try RuntimeConfiguration.parse(bytes: bytes, path: "fuzz.ini"))
        } catch {
            checkLocated(error, lineCount: lineCount, case: index)
            return .failure(error)
        }
    }

    private func checkLocated(_ error: ConfigurationError, lineCount: Int, case index: Int) {
        #expect(error.path == "fuzz.ini", "case \(index)")
        if let line = error.line {
            #expect((1...lineCount).contains(line), "case \(index)")
            #expect(error.description.hasPrefix("fuzz.ini:\(line): "), "case \(index)")
        } else {
            #expect(error.description.hasPrefix("fuzz.ini: "), "case \(index)")
        }
        #expect(!error.message.isEmpty, "case \(index)")
    }

    // MARK: - Generators

    private static func randomBytes(_ random: inout SplitMix64) -> [UInt8] {
        let count = Int.random(in: 0...300, using: &random)
        return (0..<count).map { _ in
            Bool.random(using: &random)
                ? interestingBytes.randomElement(using: &random)!
                : UInt8.random(in: 0...255, using: &random)
        }
    }

    /// The file with a few random edits: bytes replaced, inserted or deleted, lines duplicated
    /// or swapped.
    private static func mutated(_ file: [UInt8], _ random: inout SplitMix64) -> [UInt8] {
        var bytes = file
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let position = Int.random(in: 0...bytes.count, using: &random)
            let byte = Bool.random(using: &random)
                ? interestingBytes.randomElement(using: &random)!
                : UInt8.random(in: 0...255, using: &random)
            switch Int.random(in: 0..<5, using: &random) {
            case 0 where position < bytes.count: bytes[position] = byte
            case 1: bytes.insert(byte, at: position)
            case 2 where position < bytes.count: bytes.remove(at: position)
            case 3:
                var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
                let line = Int.random(in: 0..<lines.count, using: &random)
                lines.insert(lines[line], at: Int.random(in: 0...lines.count, using: &random))
                bytes = Array(lines.joined(separator: [0x0A]))
            default:
                var lines = bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
                lines.swapAt(
                    Int.random(in: 0..<lines.count, using: &random), Int.random(in: 0..<lines.count, using: &random))
                bytes = Array(lines.joined(separator: [0x0A]))
            }
        }
        return bytes
    }

    /// A document with unique section names and keys and arbitrary printable values, with the
    /// line numbers ``render(_:)`` gives it.
    private static func randomDocument(_ random: inout SplitMix64) -> IniDocument {
        let nameCharacters = Array("abcXYZ019_-.")
        let valueScalars: [Unicode.Scalar] = Array("ab z;#\"\\=[] \t\n'é✓😀".unicodeScalars)
        func name() -> String {
            String((0..<Int.random(in: 1...8, using: &random)).map { _ in nameCharacters.randomElement(using: &random)! })
        }
        var document = IniDocument(path: "round-trip.ini")
        var line = 1
        var sectionNames = Set<String>()
        for _ in 0..<Int.random(in: 0...5, using: &random) {
            let sectionName = name()
            guard sectionNames.insert(sectionName).inserted else { continue }
            var section = IniSection(name: sectionName, path: document.path, line: line)
            line += 1
            var keys = Set<String>()
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                let key = name()
                guard keys.insert(key).inserted else { continue }
                var value = String.UnicodeScalarView()
                for _ in 0..<Int.random(in: 0...12, using: &random) { value.append(valueScalars.randomElement(using: &random)!) }
                section.entries.append(
                    IniEntry(section: sectionName, key: key, value: String(value), path: document.path, line: line))
                line += 1
            }
            document.sections.append(section)
        }
        return document
    }

    /// The document as INI text, one line per header and entry, every value quoted.
    private static func render(_ document: IniDocument) -> String {
        var text = ""
        for section in document.sections {
            text += "[\(section.name)]\n"
            for entry in section.entries {
                var value = ""
                for character in entry.value {
                    switch character {
                    case "\"": value += "\\\""
                    case "\\": value += "\\\\"
                    case "\n": value += "\\n"
                    case "\t": value += "\\t"
                    default: value.append(character)
                    }
                }
                text += "\(entry.key) = \"\(value)\"\n"
            }
        }
        return text
    }
}

/// A small, fast, seedable generator (SplitMix64), so that random tests repeat exactly.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
