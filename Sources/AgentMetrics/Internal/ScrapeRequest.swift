/// An HTTP/1.x request head as the metrics listener reads it (RFC 9112 §3), and its answers.
struct ScrapeRequest: Equatable {
    var method: String
    /// The path, without the query.
    var path: String

    /// The path Prometheus scrapes.
    static let metricsPath = "/metrics"

    enum Parse: Equatable {
        case incomplete
        case complete(ScrapeRequest)
        case malformed(String)
    }

    /// Parses `head` (what the client sent so far). The request line is checked as soon as it
    /// is complete, so that something that is not HTTP (a TLS handshake, garbage) is refused
    /// at once instead of at the deadline.
    /// - Parameter scanningFrom: where to look for the end of the head from (what was scanned
    ///   before holds none).
    static func parse(_ head: [UInt8], scanningFrom start: Int) -> Parse {
        guard let lineEnd = head.firstIndex(of: UInt8(ascii: "\n")) else {
            // No line yet: refuse early what cannot begin a request line.
            if let first = head.first, !isUpperLetter(first) { return .malformed("not an HTTP request") }
            return .incomplete
        }
        guard let (method, target) = requestLine(head[..<lineEnd]) else {
            return .malformed("not an HTTP/1.x request line")
        }
        guard let end = endOfHead(head, from: max(start, lineEnd)) else { return .incomplete }
        // The headers: between the request line and the empty line (`end` is its LF).
        let emptyLine = head[end - 1] == UInt8(ascii: "\r") ? end - 1 : end
        var lineStart = lineEnd + 1
        while lineStart < emptyLine {
            let next = head[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? end
            if !isHeaderLine(head[lineStart..<next]) { return .malformed("a malformed header line") }
            lineStart = next + 1
        }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        return .complete(ScrapeRequest(method: method, path: path))
    }

    /// `METHOD SP TARGET SP HTTP/1.x`, with an optional CR before the LF.
    private static func requestLine(_ line: ArraySlice<UInt8>) -> (String, String)? {
        var line = line
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let parts = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard parts.count == 3,
              !parts[0].isEmpty, parts[0].count <= 16, parts[0].allSatisfy(isUpperLetter),
              parts[1].first == UInt8(ascii: "/"), parts[1].allSatisfy({ $0 > 0x20 && $0 < 0x7F }),
              parts[2].count == 8, parts[2].starts(with: "HTTP/1.".utf8), parts[2].last.map(isDigit) == true
        else { return nil }
        return (String(decoding: parts[0], as: UTF8.self), String(decoding: parts[1], as: UTF8.self))
    }

    /// The index of the LF of the empty line that ends the head (`\r\n\r\n` or `\n\n`).
    private static func endOfHead(_ head: [UInt8], from start: Int) -> Int? {
        var index = start
        while let newline = head[index...].firstIndex(of: UInt8(ascii: "\n")) {
            let next = newline + 1
            if next < head.count, head[next] == UInt8(ascii: "\n") { return next }
            if next + 1 < head.count, head[next] == UInt8(ascii: "\r"), head[next + 1] == UInt8(ascii: "\n") {
                return next + 1
            }
            index = next
        }
        return nil
    }

    /// `name: value`: a non-empty token before the colon, no control characters but tab.
    private static func isHeaderLine(_ line: ArraySlice<UInt8>) -> Bool {
        var line = line
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return false }
        let name = line[..<colon]
        guard name.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { return false }
        return line[colon...].allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }
    }

    private static func isUpperLetter(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") }
    private static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    // MARK: Answers

    enum Outcome {
        case request(ScrapeRequest)
        case malformed(String)
        case headTooLarge(Int)
    }

    /// The content type of the Prometheus text exposition format.
    static let expositionContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The whole answer to `outcome`: `exposition` renders the metrics for `GET /metrics`.
    static func answer(_ outcome: Outcome, exposition: () -> [UInt8] = { [] }) -> [UInt8] {
        switch outcome {
        case .request(let request) where request.path == metricsPath:
            switch request.method {
            case "GET": return response("200 OK", contentType: expositionContentType, body: exposition())
            case "HEAD": return response("200 OK", contentType: expositionContentType, body: exposition(), headOnly: true)
            default:
                return response("405 Method Not Allowed", body: "only GET and HEAD are served\n", headers: "Allow: GET, HEAD\r\n")
            }
        case .request:
            return response("404 Not Found", body: "not found: the metrics are at \(metricsPath)\n")
        case .malformed(let reason):
            return response("400 Bad Request", body: "bad request: \(reason)\n")
        case .headTooLarge(let limit):
            return response("431 Request Header Fields Too Large", body: "the request head is over \(limit) bytes\n")
        }
    }

    private static func response(
        _ status: String, contentType: String = "text/plain; charset=utf-8", body: String, headers: String = ""
    ) -> [UInt8] {
        response(status, contentType: contentType, body: Array(body.utf8), headers: headers)
    }

    private static func response(
        _ status: String, contentType: String, body: [UInt8], headOnly: Bool = false, headers: String = ""
    ) -> [UInt8] {
        var bytes = Array("HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\(headers)Connection: close\r\n\r\n".utf8)
        if !headOnly { bytes += body }
        return bytes
    }
}
