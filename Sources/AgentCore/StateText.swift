/// How an agent's state travels as text in AutoGen's state protocol, whose `state` fields
/// (`SaveStateResponse.state`, `LoadStateRequest.state`) are strings, while a plugin's
/// snapshot is bytes.
///
/// **Saving** (snapshot bytes → `state`): bytes that are one JSON text — valid UTF-8, any JSON
/// value, RFC 8259 strictly (``JSONSyntax``) — go unchanged, so an agent that keeps JSON state
/// (an AgentSDK `StatefulAgent`, and what AutoGen users expect) is saved as that
/// JSON. Any other bytes go as a base64 data URL:
/// `data:application/octet-stream;base64,<base64>` (RFC 2397; standard base64 alphabet, with
/// padding, no line breaks).
///
/// **Loading** (`state` → snapshot bytes): a `state` that begins with `data:` is decoded as a
/// data URL, which must be a base64 one (`data:<any media type>;base64,<base64>`); a malformed
/// one is refused with an error naming what is wrong. Any other `state` is taken as its UTF-8
/// bytes, unchecked (a JSON text never begins with `data:`).
///
/// So `text(for:)` then `snapshot(from:)` gives back the same bytes, whatever they are.
///
/// ```swift
/// StateText.text(for: Array(#"{"count": 3}"#.utf8))   // {"count": 3}
/// StateText.text(for: [1, 5, 0, 0, 0, 0, 0, 0, 0])     // data:application/octet-stream;base64,AQUAAAAAAAAA
/// try StateText.snapshot(from: "data:application/octet-stream;base64,AQUAAAAAAAAA")  // [1, 5, 0, …]
/// ```
public enum StateText {
    /// What a binary state's text begins with.
    public static let dataURLPrefix = "data:application/octet-stream;base64,"

    /// A `state` beginning with `data:` that is not a base64 data URL.
    public struct MalformedDataURL: Error, Sendable, Hashable, CustomStringConvertible {
        /// What is wrong with it.
        public var problem: String

        public init(_ problem: String) { self.problem = problem }

        public var description: String {
            "the state is not a valid data URL (\(problem)); a binary state is written \(StateText.dataURLPrefix)<base64>"
        }
    }

    /// The `state` text for a snapshot: the bytes themselves if they are one JSON text, else a
    /// base64 data URL.
    public static func text(for snapshot: [UInt8]) -> String {
        if JSONSyntax.isValid(snapshot) { return String(decoding: snapshot, as: UTF8.self) }
        return dataURLPrefix + Base64.encode(snapshot)
    }

    /// The snapshot bytes a `state` text stands for.
    /// - Throws: ``MalformedDataURL`` if it begins with `data:` and is not a base64 data URL.
    public static func snapshot(from text: String) throws(MalformedDataURL) -> [UInt8] {
        guard text.hasPrefix("data:") else { return Array(text.utf8) }
        let url = text.utf8.dropFirst("data:".count)
        guard let comma = url.firstIndex(of: UInt8(ascii: ",")) else {
            throw MalformedDataURL("it has no ',' before its data")
        }
        let parameters = url[..<comma]
        guard parameters.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: false).last
            .map({ $0.elementsEqual("base64".utf8) }) == true
        else {
            throw MalformedDataURL("it is not a base64 data URL: ';base64' must come right before the ','")
        }
        do {
            return try Base64.decode(Array(url[url.index(after: comma)...]))
        } catch {
            throw MalformedDataURL("its base64 data \(error)")
        }
    }
}

/// Standard base64 (RFC 4648 §4: `A–Z a–z 0–9 + /`, `=` padding), for ``StateText`` (AgentCore
/// is Foundation-free: the lean host links it).
enum Base64 {
    /// Where base64 text is not valid.
    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// The value of each alphabet byte; 0xFF for bytes outside it.
    private static let values: [UInt8] = {
        var values = [UInt8](repeating: 0xFF, count: 256)
        for (value, byte) in alphabet.enumerated() { values[Int(byte)] = UInt8(value) }
        return values
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var text: [UInt8] = []
        text.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let count = min(3, bytes.count - index)
            let group = (UInt32(bytes[index]) << 16)
                | (count > 1 ? UInt32(bytes[index + 1]) << 8 : 0)
                | (count > 2 ? UInt32(bytes[index + 2]) : 0)
            text.append(alphabet[Int(group >> 18 & 0x3F)])
            text.append(alphabet[Int(group >> 12 & 0x3F)])
            text.append(count > 1 ? alphabet[Int(group >> 6 & 0x3F)] : UInt8(ascii: "="))
            text.append(count > 2 ? alphabet[Int(group & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// - Throws: ``Malformed`` naming the offending position: a byte outside the alphabet, a
    ///   length that is not a multiple of 4, misplaced padding, or nonzero padding bits.
    static func decode(_ text: [UInt8]) throws(Malformed) -> [UInt8] {
        guard text.count % 4 == 0 else {
            throw Malformed(description: "is \(text.count) characters long, not a multiple of 4")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.count / 4 * 3)
        var index = 0
        while index < text.count {
            let isLast = index + 4 == text.count
            var group: UInt32 = 0
            var padding = 0
            for offset in 0..<4 {
                let byte = text[index + offset]
                if byte == UInt8(ascii: "="), isLast, offset >= 2 {
                    padding += 1
                    group <<= 6
                    continue
                }
                let position = index + offset + 1
                if byte == UInt8(ascii: "=") {
                    throw Malformed(description: "has '=' padding at character \(position), before its end")
                }
                let value = values[Int(byte)]
                let what = (0x20..<0x7F).contains(byte) ? "'\(Character(Unicode.Scalar(byte)))'" : "the byte \(byte)"
                guard value != 0xFF else {
                    throw Malformed(description: "has \(what) at character \(position), which is not a base64 character")
                }
                guard padding == 0 else {
                    throw Malformed(description: "has \(what) after its '=' padding, at character \(position)")
                }
                group = group << 6 | UInt32(value)
            }
            bytes.append(UInt8(group >> 16 & 0xFF))
            if padding < 2 { bytes.append(UInt8(group >> 8 & 0xFF)) }
            if padding < 1 { bytes.append(UInt8(group & 0xFF)) }
            // Canonical: the bits the padding drops are zero.
            if (padding == 1 && group & 0xFF != 0) || (padding == 2 && group & 0xFFFF != 0) {
                throw Malformed(description: "has nonzero bits before its padding at character \(index + 4 - padding)")
            }
            index += 4
        }
        return bytes
    }
}
