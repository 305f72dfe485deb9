/// Turns the bytes of an INI file into an ``IniDocument``, one line at a time.
///
/// It works on UTF-8 bytes: every byte of the syntax (`[ ] = ; # " \`, space, tab) is ASCII,
/// and ASCII bytes never occur inside a multi-byte UTF-8 sequence, so a line is checked to be
/// valid UTF-8 once and then scanned byte by byte.
struct IniParser {
    private(set) var document: IniDocument
    /// The line of each section's header, to report duplicates.
    private var sectionLines: [String: Int] = [:]
    /// The line of each key in the current section, to report duplicates.
    private var keyLines: [String: Int] = [:]

    init(path: String) {
        document = IniDocument(path: path)
    }

    private var path: String { document.path }

    mutating func parse(_ bytes: [UInt8]) throws(ConfigurationError) {
        guard bytes.count <= IniDocument.maximumFileSize else {
            throw ConfigurationError(
                .fileTooLarge,
                "the file is \(bytes.count) bytes; a configuration file may be at most 1 MiB (\(IniDocument.maximumFileSize) bytes)",
                path: path)
        }
        var start = bytes.starts(with: [0xEF, 0xBB, 0xBF]) ? 3 : 0
        var number = 1
        while true {
            let end = bytes[start...].firstIndex(of: ASCII.lineFeed) ?? bytes.count
            var line = bytes[start..<end]
            if line.last == ASCII.carriageReturn { line = line.dropLast() }
            try parseLine(Array(line), number: number)
            if end == bytes.count { break }
            start = end + 1
            number += 1
        }
    }

    // MARK: - One line

    private mutating func parseLine(_ line: [UInt8], number: Int) throws(ConfigurationError) {
        try checkCharacters(line, number: number)
        let (first, last) = trimmed(line, 0, line.count)
        guard first < last else { return }  // blank
        switch line[first] {
        case ASCII.semicolon, ASCII.hash:
            return  // full-line comment
        case ASCII.openBracket:
            try parseSectionHeader(line, first, last, number: number)
        default:
            try parseEntry(line, first, last, number: number)
        }
    }

    /// Refuses bytes that are not UTF-8, and control characters other than tab.
    private func checkCharacters(_ line: [UInt8], number: Int) throws(ConfigurationError) {
        var iterator = line.makeIterator()
        var parser = Unicode.UTF8.ForwardParser()
        var offset = 0
        var column = 1
        while true {
            switch parser.parseScalar(from: &iterator) {
            case .valid(let encoded):
                let scalar = Unicode.UTF8.decode(encoded)
                if scalar == "\0" {
                    throw ConfigurationError(
                        .controlCharacter,
                        "the line holds a NUL byte (column \(column)); a configuration file is text, is this a binary file?",
                        path: path, line: number)
                }
                if (scalar.value < 0x20 && scalar != "\t") || scalar.value == 0x7F {
                    let code = String(scalar.value, radix: 16, uppercase: true)
                    throw ConfigurationError(
                        .controlCharacter,
                        "the line holds the control character U+\(String(repeating: "0", count: 4 - code.count))\(code) (column \(column)); only tab is allowed (write \\t or \\n inside double quotes)",
                        path: path, line: number)
                }
                offset += encoded.count
                column += 1
            case .emptyInput:
                return
            case .error(let length):
                let byte = String(line[offset], radix: 16, uppercase: true)
                throw ConfigurationError(
                    .invalidEncoding,
                    "the line is not valid UTF-8 (byte 0x\(byte.count == 1 ? "0" : "")\(byte) at byte \(offset + 1) of the line, \(length) byte\(length == 1 ? "" : "s") undecodable); save the file as UTF-8",
                    path: path, line: number)
            }
        }
    }

    /// `[name]`, optionally followed by a comment.
    private mutating func parseSectionHeader(
        _ line: [UInt8], _ first: Int, _ last: Int, number: Int
    ) throws(ConfigurationError) {
        guard let close = line[(first + 1)..<last].firstIndex(of: ASCII.closeBracket) else {
            throw ConfigurationError(
                .malformedLine, "the section header has no closing ']'", path: path, line: number)
        }
        let (restFirst, restLast) = trimmed(line, close + 1, last)
        guard restFirst == restLast || isCommentStart(line[restFirst]) else {
            throw ConfigurationError(
                .malformedLine,
                "unexpected text \(quoted(text(line, restFirst, restLast))) after the section header",
                path: path, line: number)
        }
        let (nameFirst, nameLast) = trimmed(line, first + 1, close)
        let name = text(line, nameFirst, nameLast)
        guard !name.isEmpty else {
            throw ConfigurationError(.invalidSectionName, "the section name is empty", path: path, line: number)
        }
        guard name.utf8.allSatisfy(isNameByte) else {
            throw ConfigurationError(
                .invalidSectionName,
                "the section name \(quoted(name)) may only contain letters, digits, '_', '-' and '.'",
                path: path, line: number, section: name)
        }
        if let firstLine = sectionLines[name] {
            throw ConfigurationError(
                .duplicateSection, "duplicate section [\(name)] (first at line \(firstLine)); merge the two",
                path: path, line: number, section: name)
        }
        sectionLines[name] = number
        keyLines = [:]
        document.sections.append(IniSection(name: name, path: path, line: number))
    }

    /// `key = value`.
    private mutating func parseEntry(
        _ line: [UInt8], _ first: Int, _ last: Int, number: Int
    ) throws(ConfigurationError) {
        guard let equals = line[first..<last].firstIndex(of: ASCII.equals) else {
            throw ConfigurationError(
                .malformedLine,
                "expected 'key = value', a '[section]' header, or a comment starting with ';' or '#'",
                path: path, line: number)
        }
        let (keyFirst, keyLast) = trimmed(line, first, equals)
        let key = text(line, keyFirst, keyLast)
        guard !key.isEmpty else {
            throw ConfigurationError(
                .emptyKey, "the key is empty; write 'key = value'", path: path, line: number,
                section: document.sections.last?.name)
        }
        guard let section = document.sections.last?.name else {
            throw ConfigurationError(
                .keyOutsideSection,
                "the key comes before any [section] header; put it under the section it belongs to, such as [runtime]",
                path: path, line: number, key: key)
        }
        guard key.utf8.allSatisfy(isNameByte) else {
            throw ConfigurationError(
                .invalidKey, "the key may only contain letters, digits, '_', '-' and '.'",
                path: path, line: number, section: section, key: key)
        }
        if let firstLine = keyLines[key] {
            throw ConfigurationError(
                .duplicateKey, "the key is set twice in [\(section)] (first at line \(firstLine)); keep one",
                path: path, line: number, section: section, key: key)
        }
        let value = try parseValue(line, equals + 1, last, number: number, section: section, key: key)
        keyLines[key] = number
        document.sections[document.sections.count - 1].entries.append(
            IniEntry(section: section, key: key, value: value, path: path, line: number))
    }

    /// The text after `=`: quoted, or unquoted up to an inline comment.
    private func parseValue(
        _ line: [UInt8], _ start: Int, _ end: Int, number: Int, section: String, key: String
    ) throws(ConfigurationError) -> String {
        let (first, _) = trimmed(line, start, end)
        if first < end, line[first] == ASCII.quote {
            return try parseQuotedValue(line, first + 1, end, number: number, section: section, key: key)
        }
        // An inline comment starts at ';' or '#' that begins the value or follows whitespace.
        var stop = end
        var index = first
        while index < end {
            if isCommentStart(line[index]), index == first || isWhitespace(line[index - 1]) {
                stop = index
                break
            }
            index += 1
        }
        let (valueFirst, valueLast) = trimmed(line, first, stop)
        return text(line, valueFirst, valueLast)
    }

    /// `"..."` with escapes, optionally followed by whitespace and a comment.
    private func parseQuotedValue(
        _ line: [UInt8], _ start: Int, _ end: Int, number: Int, section: String, key: String
    ) throws(ConfigurationError) -> String {
        var value: [UInt8] = []
        var index = start
        while index < end {
            let byte = line[index]
            if byte == ASCII.quote {
                let (restFirst, restLast) = trimmed(line, index + 1, end)
                guard restFirst == restLast || isCommentStart(line[restFirst]) else {
                    throw ConfigurationError(
                        .malformedLine,
                        "unexpected text \(quoted(text(line, restFirst, restLast))) after the closing quote; put the whole value inside the quotes",
                        path: path, line: number, section: section, key: key)
                }
                return String(decoding: value, as: UTF8.self)
            }
            if byte == ASCII.backslash {
                guard index + 1 < end else { break }  // a trailing backslash: unterminated
                switch line[index + 1] {
                case ASCII.quote: value.append(ASCII.quote)
                case ASCII.backslash: value.append(ASCII.backslash)
                case UInt8(ascii: "n"): value.append(ASCII.lineFeed)
                case UInt8(ascii: "t"): value.append(ASCII.tab)
                default:
                    // The escaped character may be multi-byte: show the whole scalar.
                    var scalarEnd = index + 2
                    while scalarEnd < end, line[scalarEnd] & 0xC0 == 0x80 { scalarEnd += 1 }
                    let escape = text(line, index, scalarEnd)
                    throw ConfigurationError(
                        .invalidEscape,
                        "unknown escape '\(escape)' in a quoted value; the escapes are \\\" \\\\ \\n and \\t",
                        path: path, line: number, section: section, key: key)
                }
                index += 2
                continue
            }
            value.append(byte)
            index += 1
        }
        throw ConfigurationError(
            .unterminatedQuote,
            "the quoted value has no closing '\"' on this line (a value cannot span lines; write \\n for a line break)",
            path: path, line: number, section: section, key: key)
    }

    // MARK: - Bytes

    /// The range `[first, last)` without the whitespace at either end.
    private func trimmed(_ line: [UInt8], _ first: Int, _ last: Int) -> (Int, Int) {
        var first = first
        var last = last
        while first < last, isWhitespace(line[first]) { first += 1 }
        while last > first, isWhitespace(line[last - 1]) { last -= 1 }
        return (first, last)
    }

    private func text(_ line: [UInt8], _ first: Int, _ last: Int) -> String {
        String(decoding: line[first..<last], as: UTF8.self)
    }

    private func isWhitespace(_ byte: UInt8) -> Bool { byte == ASCII.space || byte == ASCII.tab }
    private func isCommentStart(_ byte: UInt8) -> Bool { byte == ASCII.semicolon || byte == ASCII.hash }

    /// Letters, digits, `_`, `-` and `.`: what section names and keys may hold.
    private func isNameByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }
}

/// The ASCII bytes of the syntax.
enum ASCII {
    static let tab = UInt8(ascii: "\t")
    static let lineFeed = UInt8(ascii: "\n")
    static let carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " ")
    static let quote = UInt8(ascii: "\"")
    static let hash = UInt8(ascii: "#")
    static let semicolon = UInt8(ascii: ";")
    static let equals = UInt8(ascii: "=")
    static let openBracket = UInt8(ascii: "[")
    static let closeBracket = UInt8(ascii: "]")
    static let backslash = UInt8(ascii: "\\")
}

/// A value as it is shown in an error: in double quotes, with escapes for quotes, backslashes
/// and control characters, and cut short if long (so a hostile value cannot flood a log line).
func quoted(_ value: String) -> String {
    var result = "\""
    var count = 0
    for scalar in value.unicodeScalars {
        if count == 80 {
            result += "…"
            break
        }
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        case "\t": result += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            result += "\\u{\(String(scalar.value, radix: 16))}"
        default: result.unicodeScalars.append(scalar)
        }
        count += 1
    }
    return result + "\""
}
