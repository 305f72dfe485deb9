/// The Prometheus text exposition format (version 0.0.4), parsed strictly enough to catch
/// malformed output: every line is a `# HELP`, a `# TYPE`, a comment or a sample; names and
/// label names are valid, label values properly quoted and escaped, values numbers; a family's
/// `# TYPE` comes once and before its samples, and its samples stand together; no sample twice;
/// a counter's samples are not negative; a histogram has `_bucket` samples with `le`, cumulative
/// and ending at `+Inf` equal to `_count`, and one `_sum` and `_count` per label set.
///
/// ```swift
/// let metrics = try PrometheusExposition(parsing: reply.text)
/// #expect(metrics.value("agentd_host_messages_received_total", ["kind": "event"]) == 10)
/// ```
public struct PrometheusExposition: Sendable {
    public struct Sample: Sendable, Hashable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct Family: Sendable {
        public var name: String
        /// counter, gauge, histogram, summary or untyped.
        public var type: String
        public var samples: [Sample]
    }

    public struct Malformed: Error, CustomStringConvertible {
        public var line: Int
        public var reason: String
        public var text: String
        public var description: String { "line \(line): \(reason): \(text)" }
    }

    public private(set) var families: [String: Family] = [:]

    /// The value of sample `name` with exactly these labels, if present.
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        for family in families.values {
            if let sample = family.samples.first(where: { $0.name == name && $0.labels == labels }) { return sample.value }
        }
        return nil
    }

    /// Every sample named `name`.
    public func samples(_ name: String) -> [Sample] {
        families.values.flatMap { $0.samples.filter { $0.name == name } }
    }

    public init(parsing text: String) throws(Malformed) {
        guard text.isEmpty || text.hasSuffix("\n") else {
            throw Malformed(line: 0, reason: "the exposition does not end with a newline", text: String(text.suffix(40)))
        }
        var closed = Set<String>()
        var current: String?
        var seen = Set<Sample>()
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast().enumerated() {
            let number = index + 1
            func fail(_ reason: String) -> Malformed { Malformed(line: number, reason: reason, text: String(line)) }
            if line.isEmpty { throw fail("an empty line") }
            if line.hasPrefix("#") {
                let words = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
                guard words.count >= 3, words[0] == "#", words[1] == "HELP" || words[1] == "TYPE" else { continue }  // a comment
                let name = String(words[2])
                guard Self.isMetricName(name) else { throw fail("an invalid metric name") }
                if words[1] == "TYPE" {
                    guard words.count == 4, ["counter", "gauge", "histogram", "summary", "untyped"].contains(words[3]) else {
                        throw fail("an unknown type")
                    }
                    guard families[name] == nil, !closed.contains(name) else { throw fail("a second TYPE for \(name)") }
                    if let current { closed.insert(current) }
                    families[name] = Family(name: name, type: String(words[3]), samples: [])
                    current = name
                }
                continue
            }
            var sample = try Self.sample(line, fail: fail)
            let family = Self.family(of: sample.name, among: families)
            guard let family else { throw fail("a sample without a TYPE line") }
            guard family == current else { throw fail("a sample of \(family) apart from the rest of its family") }
            guard seen.insert(Sample(name: sample.name, labels: sample.labels, value: 0)).inserted else {
                throw fail("a sample given twice")
            }
            if families[family]!.type == "counter" {
                guard sample.name == family else { throw fail("a counter sample named unlike its family") }
                guard sample.value >= 0 else { throw fail("a negative counter") }
            }
            sample.value = sample.value == -0.0 ? 0 : sample.value
            families[family]!.samples.append(sample)
        }
        for family in families.values where family.type == "histogram" {
            try Self.checkHistogram(family)
        }
    }

    /// The family a sample belongs to: its own name, or a histogram's/summary's with the suffix.
    private static func family(of name: String, among families: [String: Family]) -> String? {
        if families[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let family = families[base], family.type == "histogram" || family.type == "summary" { return base }
        }
        return nil
    }

    private static func checkHistogram(_ family: Family) throws(Malformed) {
        func fail(_ reason: String) -> Malformed { Malformed(line: 0, reason: reason, text: family.name) }
        var series: [[String: String]: (buckets: [(Double, Double)], sum: Int, count: Double?)] = [:]
        for sample in family.samples {
            var labels = sample.labels
            switch sample.name {
            case family.name + "_bucket":
                guard let le = labels.removeValue(forKey: "le"), let bound = Self.number(le) else { throw fail("a bucket without a valid le") }
                series[labels, default: ([], 0, nil)].buckets.append((bound, sample.value))
            case family.name + "_sum":
                series[labels, default: ([], 0, nil)].sum += 1
            case family.name + "_count":
                series[labels, default: ([], 0, nil)].count = sample.value
            default:
                throw fail("a sample \(sample.name) in a histogram")
            }
        }
        for (labels, one) in series {
            let buckets = one.buckets.sorted { $0.0 < $1.0 }
            guard let last = buckets.last, last.0 == .infinity else { throw fail("no +Inf bucket for \(labels)") }
            guard zip(buckets, buckets.dropFirst()).allSatisfy({ $0.1 <= $1.1 }) else { throw fail("buckets not cumulative for \(labels)") }
            guard one.sum == 1, let count = one.count, count == last.1 else { throw fail("_sum/_count missing or unlike +Inf for \(labels)") }
        }
    }

    /// `name{label="value",...} value [timestamp]`.
    private static func sample(_ line: Substring, fail: (String) -> Malformed) throws(Malformed) -> Sample {
        var rest = line[...]
        let nameEnd = rest.firstIndex { $0 == "{" || $0 == " " } ?? rest.endIndex
        let name = String(rest[..<nameEnd])
        guard isMetricName(name) else { throw fail("an invalid metric name") }
        rest = rest[nameEnd...]
        var labels: [String: String] = [:]
        if rest.first == "{" {
            rest = rest.dropFirst()
            while rest.first != "}" {
                guard let equals = rest.firstIndex(of: "=") else { throw fail("a label without =") }
                let label = String(rest[..<equals])
                guard isLabelName(label) else { throw fail("an invalid label name") }
                rest = rest[rest.index(after: equals)...]
                guard rest.first == "\"" else { throw fail("an unquoted label value") }
                rest = rest.dropFirst()
                var value = ""
                while true {
                    guard let character = rest.first else { throw fail("an unterminated label value") }
                    rest = rest.dropFirst()
                    if character == "\"" { break }
                    if character == "\\" {
                        guard let escaped = rest.first else { throw fail("a dangling escape") }
                        rest = rest.dropFirst()
                        switch escaped {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw fail("an unknown escape")
                        }
                    } else {
                        value.append(character)
                    }
                }
                guard labels.updateValue(value, forKey: label) == nil else { throw fail("a label given twice") }
                if rest.first == "," { rest = rest.dropFirst() } else if rest.first != "}" { throw fail("labels not separated by commas") }
            }
            rest = rest.dropFirst()
        }
        guard rest.first == " " else { throw fail("no space before the value") }
        let fields = rest.dropFirst().split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 1 || (fields.count == 2 && Int64(fields[1]) != nil) else { throw fail("not `value [timestamp]`") }
        guard let value = number(fields[0]) else { throw fail("a value that is not a number") }
        return Sample(name: name, labels: labels, value: value)
    }

    private static func number(_ text: some StringProtocol) -> Double? {
        switch text {
        case "+Inf": .infinity
        case "-Inf": -.infinity
        case "NaN": .nan
        default: Double(String(text))
        }
    }

    private static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first == "_" || first == ":" || ("a"..."z").contains(first) || ("A"..."Z").contains(first)
        else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == ":" }
    }

    private static func isLabelName(_ name: String) -> Bool {
        !name.isEmpty && !name.contains(":") && isMetricName(name)
    }
}
