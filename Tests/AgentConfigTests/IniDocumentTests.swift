import AgentConfig
import Testing

@Suite("IniDocument")
struct IniDocumentTests {
    @Test("sections, entries, comments, quotes and whitespace parse to what the user wrote")
    func goodFile() throws {
        let text = """
            ; A full-line comment.
            # Another one.

            [runtime]
              rpc_timeout   =   30  
            client_id = worker-1 ; who we are
            note = a;b#c
            path = /tmp/x # hash comment
            equation = a = b
            empty =
            empty_with_comment = ; nothing here

            [ plugin.echo-plugin ]   ; dotted name, padded
            greeting = "Hello; \\"world\\" # not a comment"
            escapes = "tab:\\t newline:\\n backslash:\\\\"
            spaced = "  kept  "   ; trailing comment after the quote
            tight = "x";comment
            unicode = "héllo wörld ✓"
            unquoted_quote = say "hi" there
            tabbed\t=\tvalue\t
            """
        let document = try IniDocument.parse(text: text, path: "agentd.ini")
        #expect(document.path == "agentd.ini")
        #expect(document.sections.map(\.name) == ["runtime", "plugin.echo-plugin"])
        #expect(document.sections.map(\.line) == [4, 13])

        let runtime = try #require(document[section: "runtime"])
        #expect(runtime.entries.map(\.key) == [
            "rpc_timeout", "client_id", "note", "path", "equation", "empty", "empty_with_comment",
        ])
        #expect(runtime["rpc_timeout"]?.value == "30")
        #expect(runtime["client_id"]?.value == "worker-1")
        #expect(runtime["note"]?.value == "a;b#c")
        #expect(runtime["path"]?.value == "/tmp/x")
        #expect(runtime["equation"]?.value == "a = b")
        #expect(runtime["empty"]?.value == "")
        #expect(runtime["empty_with_comment"]?.value == "")
        #expect(runtime["missing"] == nil)

        let plugin = try #require(document[section: "plugin.echo-plugin"])
        #expect(plugin["greeting"]?.value == "Hello; \"world\" # not a comment")
        #expect(plugin["escapes"]?.value == "tab:\t newline:\n backslash:\\")
        #expect(plugin["spaced"]?.value == "  kept  ")
        #expect(plugin["tight"]?.value == "x")
        #expect(plugin["unicode"]?.value == "héllo wörld ✓")
        #expect(plugin["unquoted_quote"]?.value == "say \"hi\" there")
        #expect(plugin["tabbed"]?.value == "value")
        #expect(plugin.values["greeting"] == plugin["greeting"]?.value)
    }

    @Test("every entry keeps its file, section and line")
    func entryLocations() throws {
        let document = try IniDocument.parse(
            text: "\n[a]\nx = 1\n\n; c\ny = 2\n[b.c]\nz = 3\n", path: "/etc/agentd.ini")
        let entries = document.sections.flatMap(\.entries)
        #expect(entries == [
            IniEntry(section: "a", key: "x", value: "1", path: "/etc/agentd.ini", line: 3),
            IniEntry(section: "a", key: "y", value: "2", path: "/etc/agentd.ini", line: 6),
            IniEntry(section: "b.c", key: "z", value: "3", path: "/etc/agentd.ini", line: 8),
        ])
    }

    @Test("CRLF line ends and a UTF-8 byte order mark are accepted")
    func windowsFile() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("[log]\r\nlevel = debug\r\n\r\n[x]\r\nk=\"v\"\r\n".utf8)
        let document = try IniDocument.parse(bytes: bytes, path: "win.ini")
        #expect(document[section: "log"]?["level"]?.value == "debug")
        #expect(document[section: "x"]?["k"]?.value == "v")
        #expect(document[section: "x"]?["k"]?.line == 5)
    }

    @Test("an empty file, or one of comments only, has no sections")
    func emptyFiles() throws {
        #expect(try IniDocument.parse(bytes: [], path: "a.ini").sections.isEmpty)
        #expect(try IniDocument.parse(text: "; only\n#comments\n\n  \t\n", path: "a.ini").sections.isEmpty)
        #expect(try IniDocument.parse(text: "[empty]", path: "a.ini").sections.map(\.entries) == [[]])
    }

    /// A file that must be refused, and what the error must say.
    struct BadFile: CustomTestStringConvertible, Sendable {
        var name: String
        var text: String
        var code: ConfigurationError.Code
        var line: Int
        var section: String?
        var key: String?
        var description: String
        var testDescription: String { name }
    }

    static let badFiles: [BadFile] = [
        BadFile(
            name: "a line that is not a setting", text: "[runtime]\nworkers = 2\nthis is not a setting\n",
            code: .malformedLine, line: 3, section: nil, key: nil,
            description: "agentd.ini:3: expected 'key = value', a '[section]' header, or a comment starting with ';' or '#'"),
        BadFile(
            name: "an unterminated quote", text: "[plugin.greeter]\ngreeting = \"Hello ; world\n",
            code: .unterminatedQuote, line: 2, section: "plugin.greeter", key: "greeting",
            description: "agentd.ini:2: [plugin.greeter] greeting: the quoted value has no closing '\"' on this line (a value cannot span lines; write \\n for a line break)"),
        BadFile(
            name: "a quote ended by a trailing backslash", text: "[p]\nk = \"abc\\\"\n",
            code: .unterminatedQuote, line: 2, section: "p", key: "k",
            description: "agentd.ini:2: [p] k: the quoted value has no closing '\"' on this line (a value cannot span lines; write \\n for a line break)"),
        BadFile(
            name: "an unknown escape", text: "[p]\n\nk = \"a\\qb\"\n",
            code: .invalidEscape, line: 3, section: "p", key: "k",
            description: "agentd.ini:3: [p] k: unknown escape '\\q' in a quoted value; the escapes are \\\" \\\\ \\n and \\t"),
        BadFile(
            name: "text after the closing quote", text: "[p]\nk = \"a\" b\n",
            code: .malformedLine, line: 2, section: "p", key: "k",
            description: "agentd.ini:2: [p] k: unexpected text \"b\" after the closing quote; put the whole value inside the quotes"),
        BadFile(
            name: "an empty key", text: "[log]\n = info\n",
            code: .emptyKey, line: 2, section: "log", key: nil,
            description: "agentd.ini:2: the key is empty; write 'key = value'"),
        BadFile(
            name: "a key with a space", text: "[runtime]\nrpc timeout = 5\n",
            code: .invalidKey, line: 2, section: "runtime", key: "rpc timeout",
            description: "agentd.ini:2: [runtime] rpc timeout: the key may only contain letters, digits, '_', '-' and '.'"),
        BadFile(
            name: "a key before any section", text: "; settings\nlevel = info\n[log]\n",
            code: .keyOutsideSection, line: 2, section: nil, key: "level",
            description: "agentd.ini:2: level: the key comes before any [section] header; put it under the section it belongs to, such as [runtime]"),
        BadFile(
            name: "a duplicate key", text: "[runtime]\nworkers = 2\nclient_id = a\nworkers = 4\n",
            code: .duplicateKey, line: 4, section: "runtime", key: "workers",
            description: "agentd.ini:4: [runtime] workers: the key is set twice in [runtime] (first at line 2); keep one"),
        BadFile(
            name: "a duplicate section", text: "[log]\nlevel = info\n\n[runtime]\n[log]\n",
            code: .duplicateSection, line: 5, section: "log", key: nil,
            description: "agentd.ini:5: duplicate section [log] (first at line 1); merge the two"),
        BadFile(
            name: "a section header without ']'", text: "[runtime\nworkers = 2\n",
            code: .malformedLine, line: 1, section: nil, key: nil,
            description: "agentd.ini:1: the section header has no closing ']'"),
        BadFile(
            name: "text after a section header", text: "[runtime] workers = 2\n",
            code: .malformedLine, line: 1, section: nil, key: nil,
            description: "agentd.ini:1: unexpected text \"workers = 2\" after the section header"),
        BadFile(
            name: "an empty section name", text: "[runtime]\n[  ]\n",
            code: .invalidSectionName, line: 2, section: nil, key: nil,
            description: "agentd.ini:2: the section name is empty"),
        BadFile(
            name: "a section name with a space", text: "[plugin greeter]\n",
            code: .invalidSectionName, line: 1, section: "plugin greeter", key: nil,
            description: "agentd.ini:1: the section name \"plugin greeter\" may only contain letters, digits, '_', '-' and '.'"),
        BadFile(
            name: "a NUL byte", text: "[log]\nlevel = in\u{0}fo\n",
            code: .controlCharacter, line: 2, section: nil, key: nil,
            description: "agentd.ini:2: the line holds a NUL byte (column 11); a configuration file is text, is this a binary file?"),
        BadFile(
            name: "an escape character", text: "[log]\nlevel = \u{1B}[31minfo\n",
            code: .controlCharacter, line: 2, section: nil, key: nil,
            description: "agentd.ini:2: the line holds the control character U+001B (column 9); only tab is allowed (write \\t or \\n inside double quotes)"),
        BadFile(
            name: "a lone carriage return", text: "[log]\rlevel = info\n",
            code: .controlCharacter, line: 1, section: nil, key: nil,
            description: "agentd.ini:1: the line holds the control character U+000D (column 6); only tab is allowed (write \\t or \\n inside double quotes)"),
    ]

    @Test("each malformed file is refused with its line, key and a readable description", arguments: badFiles)
    func badFile(_ bad: BadFile) throws {
        let error = try #require(throws: ConfigurationError.self) {
            try IniDocument.parse(text: bad.text, path: "agentd.ini")
        }
        #expect(error.code == bad.code)
        #expect(error.path == "agentd.ini")
        #expect(error.line == bad.line)
        #expect(error.section == bad.section)
        #expect(error.key == bad.key)
        #expect(error.description == bad.description)
    }

    @Test("bytes that are not UTF-8 are refused with their line")
    func notUTF8() throws {
        for bad: [UInt8] in [[0xFF], [0xC3], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80]] {
            let bytes = Array("[plugin.x]\nname = caf".utf8) + bad + Array("e\n".utf8)
            let error = try #require(throws: ConfigurationError.self) {
                try IniDocument.parse(bytes: bytes, path: "latin1.ini")
            }
            #expect(error.code == .invalidEncoding)
            #expect(error.line == 2)
            #expect(error.description.hasPrefix("latin1.ini:2: the line is not valid UTF-8 (byte 0x"))
            #expect(error.description.contains("at byte 11 of the line"))
            #expect(error.description.hasSuffix("save the file as UTF-8"))
        }
    }

    @Test("a file over 1 MiB is refused before it is parsed; exactly 1 MiB is accepted")
    func sizeLimit() throws {
        let line = Array("; padding padding padding padding padding padding padding padding padding\n".utf8)
        var bytes: [UInt8] = []
        while bytes.count + line.count <= IniDocument.maximumFileSize { bytes += line }
        bytes += [UInt8](repeating: UInt8(ascii: ";"), count: IniDocument.maximumFileSize - bytes.count)
        #expect(bytes.count == 1_048_576)
        #expect(try IniDocument.parse(bytes: bytes, path: "big.ini").sections.isEmpty)

        let error = try #require(throws: ConfigurationError.self) {
            try IniDocument.parse(bytes: bytes + [UInt8(ascii: "\n")], path: "big.ini")
        }
        #expect(error.code == .fileTooLarge)
        #expect(error.line == nil)
        #expect(error.description == "big.ini: the file is 1048577 bytes; a configuration file may be at most 1 MiB (1048576 bytes)")
    }

    @Test("a long hostile value is cut short in the error message")
    func longValueInMessage() throws {
        let value = String(repeating: "x", count: 10_000)
        let error = try #require(throws: ConfigurationError.self) {
            try IniDocument.parse(text: "[p]\nk = \"a\" \(value)\n", path: "a.ini")
        }
        #expect(error.message.count < 200)
        #expect(error.message.contains("…"))
    }
}
