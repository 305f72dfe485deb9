/// How the messages that arrived differ from the ones expected — how many, and the first
/// differing message and byte — or nil when they are the same, byte for byte.
///
/// Tests compare with this (`#expect(byteDifference(received, sent) == nil)`) so that a failure
/// prints one line instead of two arrays of thousands of numbers.
func byteDifference(_ received: [[UInt8]], _ expected: [[UInt8]]) -> String? {
    for (index, (got, want)) in zip(received, expected).enumerated() {
        if let difference = byteDifference(got, want) { return "message \(index): \(difference)" }
    }
    guard received.count == expected.count else {
        return "\(received.count) messages arrived, \(expected.count) expected (the common ones match)"
    }
    return nil
}

/// How one message differs from the one expected, or nil when they are the same.
func byteDifference(_ received: [UInt8]?, _ expected: [UInt8]) -> String? {
    guard let received else { return "nothing arrived (\(expected.count) bytes expected)" }
    if let index = zip(received, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
        return "byte \(index) is \(received[index]), expected \(expected[index]) (\(received.count) bytes, \(expected.count) expected)"
    }
    guard received.count == expected.count else {
        return "\(received.count) bytes, \(expected.count) expected (the common prefix matches)"
    }
    return nil
}
