import AgentConfig
import FuzzSupport

/// The fuzz target for the INI configuration: ``IniDocument/parse(bytes:path:)`` and
/// ``RuntimeConfiguration/parse(bytes:path:)`` on any bytes.
///
/// Beyond "never traps", it checks what the parser documents for every document it returns
/// (names unique and made of name characters, lines in file order) and that every error names
/// a line of the file; and that a document written back out canonically (every value quoted
/// and escaped) parses to the same sections, keys and values. A broken property traps with a
/// `precondition` message, which libFuzzer reports as a crash.
///
/// Run by `scripts/fuzz`; corpus in `Fuzz/Corpus/ini`.
enum IniFuzz {
    static let path = "fuzz.ini"

    static func run(_ input: UnsafeRawBufferPointer) {
        let bytes = Array(input)
        let lineCount = bytes.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        do {
            let document = try IniDocument.parse(bytes: bytes, path: path)
            checkInvariants(document)
            checkRoundTrip(document)
        } catch {
            checkLocated(error, lineCount: lineCount)
        }
        do {
            _ = try RuntimeConfiguration.parse(bytes: bytes, path: path)
        } catch {
            checkLocated(error, lineCount: lineCount)
        }
    }

    /// What ``IniDocument`` promises about a parsed file.
    static func checkInvariants(_ document: IniDocument) {
        precondition(document.path == path, "document path \(document.path)")
        var names = Set<String>()
        var lastLine = 0
        for section in document.sections {
            precondition(isName(section.name), "section name \(section.name.debugDescription) has other characters")
            precondition(names.insert(section.name).inserted, "section [\(section.name)] appears twice")
            precondition(
                section.line > lastLine, "section [\(section.name)] at line \(section.line) after line \(lastLine)")
            precondition(section.path == path)
            lastLine = section.line
            var keys = Set<String>()
            for entry in section.entries {
                precondition(isName(entry.key), "key \(entry.key.debugDescription) has other characters")
                precondition(keys.insert(entry.key).inserted, "key \(entry.key) appears twice in [\(section.name)]")
                precondition(entry.section == section.name, "entry of [\(entry.section)] listed under [\(section.name)]")
                precondition(entry.line > lastLine, "entry \(entry.key) at line \(entry.line) after line \(lastLine)")
                precondition(entry.path == path)
                precondition(section[entry.key] == entry)
                lastLine = entry.line
            }
        }
    }

    /// Writes the document out with every value quoted and escaped, parses that, and expects
    /// the same sections, keys and values in the same order.
    static func checkRoundTrip(_ document: IniDocument) {
        var text = ""
        for section in document.sections {
            text += "[\(section.name)]\n"
            for entry in section.entries {
                text += "\(entry.key) = \"\(escaped(entry.value))\"\n"
            }
        }
        guard text.utf8.count <= IniDocument.maximumFileSize else { return }
        let reparsed: IniDocument
        do {
            reparsed = try IniDocument.parse(text: text, path: path)
        } catch {
            preconditionFailure("the document written back out does not parse: \(error)\n\(text)")
        }
        precondition(
            flattened(reparsed) == flattened(document),
            "the document written back out parses differently:\n\(text)")
    }

    /// Every error the parser or the schema throws for a file names a line of that file, if any.
    static func checkLocated(_ error: ConfigurationError, lineCount: Int) {
        Sink.keep(String(describing: error))
        precondition(error.path == path, "error without the file's name: \(error)")
        if let line = error.line {
            precondition((1...lineCount).contains(line), "error at line \(line) of a \(lineCount)-line file: \(error)")
        }
    }

    static func isName(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
                return true
            default:
                return false
            }
        }
    }

    /// A value inside double quotes: the four escapes the syntax has.
    static func escaped(_ value: String) -> String {
        var result = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    /// Sections, keys and values, byte for byte (`String ==` would equate canonically
    /// equivalent spellings).
    static func flattened(_ document: IniDocument) -> [[UInt8]] {
        document.sections.flatMap { section in
            [Array(section.name.utf8)] + section.entries.flatMap { [Array($0.key.utf8), Array($0.value.utf8)] }
        }
    }
}

/// libFuzzer's entry point (and `CorpusReplay`'s, through ``IniFuzz/run(_:)``).
@_cdecl("LLVMFuzzerTestOneInput")
public func iniFuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    IniFuzz.run(UnsafeRawBufferPointer(start: data, count: data == nil ? 0 : size))
    return 0
}

#if !LIBFUZZER
@main
extension IniFuzz {
    static func main() { CorpusReplay.main(target: "IniFuzz", run: IniFuzz.run) }
}
#endif
