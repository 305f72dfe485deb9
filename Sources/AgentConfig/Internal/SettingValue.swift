/// Why a value does not fit its key; the schema adds the file, line and key.
struct SettingValueError: Error {
    var message: String
    init(_ message: String) { self.message = message }
}

/// Parsers for the kinds of values the configuration's keys take.
enum SettingValue {
    /// The longest timeout accepted: one day.
    static let longestSeconds = 86_400

    /// A positive decimal number of seconds, `60` or `0.5`, from 0.001 to one day.
    static func seconds(_ text: String) throws(SettingValueError) -> Duration {
        guard let duration = try decimalSeconds(text), duration <= .seconds(longestSeconds) else {
            throw SettingValueError("\(quoted(text)) seconds is too long; the most is \(longestSeconds) (one day)")
        }
        guard duration >= .milliseconds(1) else {
            throw SettingValueError("\(quoted(text)) is not a positive number of seconds; the least is 0.001")
        }
        return duration
    }

    /// A decimal number of seconds, `3` or `1.5`, in `range`.
    /// - Parameter what: how the message names the value, e.g. "the lease".
    static func seconds(
        _ text: String, in range: ClosedRange<Duration>, what: String
    ) throws(SettingValueError) -> Duration {
        guard let duration = try decimalSeconds(text), range.contains(duration) else {
            throw SettingValueError(
                "\(quoted(text)) is out of range: \(what) must be from \(secondsText(range.lowerBound)) to \(secondsText(range.upperBound)) seconds")
        }
        return duration
    }

    /// `text` as a decimal number of seconds (`60`, `0.5`; nanoseconds from the first nine
    /// decimal places), or nil when its whole seconds are more than ``longestSeconds``.
    private static func decimalSeconds(_ text: String) throws(SettingValueError) -> Duration? {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0]
        let fraction = parts.count == 2 ? parts[1] : ""
        guard !whole.isEmpty, whole.utf8.allSatisfy(isDigit), fraction.utf8.allSatisfy(isDigit),
            parts.count == 1 || !fraction.isEmpty
        else {
            throw SettingValueError("\(quoted(text)) is not a number of seconds (write it like 60 or 0.5)")
        }
        guard let wholeSeconds = Int(whole), wholeSeconds <= longestSeconds else { return nil }
        let nanoDigits = String(fraction.prefix(9)).zeroPadded(toLength: 9)
        let nanoseconds = Int(nanoDigits) ?? 0
        return Duration.seconds(wholeSeconds) + .nanoseconds(nanoseconds)
    }

    /// A duration as a decimal number of seconds, without trailing zeros: `3`, `1.5`.
    static func secondsText(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        guard attoseconds != 0 else { return "\(seconds)" }
        var fraction = String(attoseconds)
        fraction = String(repeating: "0", count: 18 - fraction.count) + fraction
        while fraction.last == "0" { fraction.removeLast() }
        return "\(seconds).\(fraction)"
    }

    /// `true` or `false` (also `yes`/`no`, `on`/`off`, `1`/`0`).
    static func boolean(_ text: String, what: String) throws(SettingValueError) -> Bool {
        switch text.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw SettingValueError("\(quoted(text)) is not true or false (\(what))")
        }
    }

    /// A whole number in `range`, digits only.
    static func integer(_ text: String, in range: ClosedRange<Int>, what: String) throws(SettingValueError) -> Int {
        guard !text.isEmpty, text.utf8.allSatisfy(isDigit) else {
            throw SettingValueError("\(quoted(text)) is not a whole number of \(what) (\(range.lowerBound) to \(range.upperBound))")
        }
        guard let number = Int(text), range.contains(number) else {
            throw SettingValueError("\(quoted(text)) is out of range: the number of \(what) must be from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    /// A positive number of bytes, optionally with a 1024-based unit: `4194304`, `4 MiB`,
    /// `512KiB`.
    static func byteCount(
        _ text: String, largest: Int, largestMeaning: String = "2 GiB - 1, gRPC's limit"
    ) throws(SettingValueError) -> Int {
        let digits = text.prefix { $0.isASCII && $0.isNumber }
        let unit = text.dropFirst(digits.count).drop { $0 == " " || $0 == "\t" }
        let multiplier: Int
        switch unit {
        case "": multiplier = 1
        case "B": multiplier = 1
        case "KiB": multiplier = 1024
        case "MiB": multiplier = 1024 * 1024
        default:
            throw SettingValueError(
                "\(quoted(text)) is not a number of bytes: write a whole number, optionally followed by KiB or MiB (1024-based), like 4194304 or 4 MiB")
        }
        guard !digits.isEmpty else {
            throw SettingValueError(
                "\(quoted(text)) is not a number of bytes: write a whole number, optionally followed by KiB or MiB (1024-based), like 4194304 or 4 MiB")
        }
        guard let number = Int(digits), number <= largest / multiplier, number * multiplier <= largest else {
            throw SettingValueError("\(quoted(text)) is too large; the most is \(largest) bytes (\(largestMeaning))")
        }
        guard number > 0 else {
            throw SettingValueError("\(quoted(text)) is not a positive number of bytes")
        }
        return number * multiplier
    }

    /// The fewest characters a token may have.
    static let minimumTokenLength = 16

    /// A shared authorization token: at least ``minimumTokenLength`` characters of RFC 6750's
    /// `b64token` alphabet (letters, digits, `-` `.` `_` `~` `+` `/` and `=`), which travel in
    /// an `authorization: Bearer` header as they are. Messages never repeat the token.
    /// - Parameter what: how the message names it, e.g. "the token" or "the token on line 3".
    static func token(_ text: Substring, what: String) throws(SettingValueError) -> String {
        guard text.utf8.allSatisfy(isTokenByte) else {
            throw SettingValueError(
                "\(what) holds a character a token may not; use letters, digits and - . _ ~ + / = (make one with: openssl rand -hex 32)")
        }
        guard text.utf8.count >= minimumTokenLength else {
            throw SettingValueError(
                "\(what) is \(text.utf8.count) characters long; a token needs at least \(minimumTokenLength) (make one with: openssl rand -hex 32)")
        }
        return String(text)
    }

    /// The items of a comma-separated list (`A, B, C`), each without surrounding spaces and
    /// tabs, parsed by `parse`.
    /// - Parameter advice: how to write the list, for the message about an empty item, e.g.
    ///   "list hosts as HOST:PORT, HOST:PORT".
    static func list<Item>(
        _ text: String, advice: String, _ parse: (Substring) throws(SettingValueError) -> Item
    ) throws(SettingValueError) -> [Item] {
        var items: [Item] = []
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = item.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed()
            guard !item.isEmpty else {
                throw SettingValueError("\(quoted(text)) has an empty entry; \(advice)")
            }
            items.append(try parse(Substring(item)))
        }
        return items
    }

    /// A NATS server's URL: `nats://HOST:PORT`, `tls://HOST:PORT`, or `HOST:PORT`, which is
    /// taken as `nats://HOST:PORT`. The scheme is returned in lower case.
    static func natsServer(_ text: Substring) throws(SettingValueError) -> String {
        let form = "nats://HOST:PORT, tls://HOST:PORT or HOST:PORT, like nats://10.0.0.5:4222"
        var scheme = "nats"
        var address = text
        if let separator = text.firstRange(of: "://") {
            scheme = text[..<separator.lowerBound].lowercased()
            address = text[separator.upperBound...]
            guard scheme == "nats" || scheme == "tls" else {
                throw SettingValueError("\(quoted(String(text))): the scheme must be nats:// or tls://; write \(form)")
            }
        }
        if let at = address.lastIndex(of: "@") {
            // Never repeat what comes before '@': it may be a password.
            throw SettingValueError(
                "\(quoted("\(scheme)://…@\(address[address.index(after: at)...])")): a user or password does not go in the server's address; use token, token_file or credentials")
        }
        let hostAndPort = try hostAndPort(String(address), allowsPortZero: false, shown: String(text), form: form)
        return "\(scheme)://\(hostAndPort)"
    }

    /// A NATS token: anything but whitespace and control characters. Messages never repeat
    /// the token.
    /// - Parameter what: how the message names it, e.g. "the token".
    static func natsToken(_ text: some StringProtocol, what: String) throws(SettingValueError) -> String {
        if let bad = text.unicodeScalars.firstIndex(where: { $0.properties.isWhitespace || $0.properties.generalCategory == .control }) {
            let position = text.unicodeScalars.distance(from: text.unicodeScalars.startIndex, to: bad) + 1
            throw SettingValueError(
                "\(what) holds whitespace or a control character (character \(position)); a NATS token is one word")
        }
        return String(text)
    }

    /// `HOST:PORT`, `[IPv6]:PORT`.
    /// - Parameters:
    ///   - shown: what messages quote (default `text`), e.g. the whole URL `text` came from.
    ///   - form: what messages ask to write instead.
    static func hostAndPort(
        _ text: String, allowsPortZero: Bool, shown: String? = nil,
        form: String = "HOST:PORT, like 127.0.0.1:50051, localhost:50051 or [::1]:50051"
    ) throws(SettingValueError) -> HostAndPort {
        let value = quoted(shown ?? text)
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw SettingValueError("\(value) has no closing ']' after the IPv6 address; write \(form)")
            }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw SettingValueError("\(value) has no port after the IPv6 address; write \(form)")
            }
            port = rest.dropFirst()
            guard !host.isEmpty, host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw SettingValueError("\(value) does not hold an IPv6 address in its brackets; write \(form)")
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw SettingValueError("\(value) has no port; write \(form)")
            }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
            guard !host.contains(":") else {
                throw SettingValueError("\(value): an IPv6 address goes in brackets, like [::1]:50051")
            }
            guard !host.isEmpty else {
                throw SettingValueError("\(value) has no host before the port; write \(form)")
            }
            guard host.utf8.allSatisfy(isHostByte) else {
                throw SettingValueError("\(value): the host may only contain letters, digits, '-', '_' and '.'; write \(form)")
            }
        }
        guard !port.isEmpty, port.count <= 5, port.utf8.allSatisfy(isDigit), let number = Int(port), number <= 65535 else {
            throw SettingValueError("\(value) has no valid port: the port is a number from \(allowsPortZero ? 0 : 1) to 65535")
        }
        guard allowsPortZero || number != 0 else {
            throw SettingValueError("\(value): port 0 cannot be connected to; give the port the host listens on")
        }
        return HostAndPort(host: String(host), port: number)
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }

    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"), UInt8(ascii: "+"), UInt8(ascii: "/"), UInt8(ascii: "="):
            return true
        default:
            return false
        }
    }

    private static func isHostByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."):
            return true
        default:
            return false
        }
    }
}

extension String {
    /// The string padded on the right with zeros to `length` characters.
    fileprivate func zeroPadded(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: "0", count: length - count)
    }
}
