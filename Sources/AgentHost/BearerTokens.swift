/// The shared tokens a host accepts in `authorization: Bearer <token>` metadata, and the check
/// of one call's metadata against them.
///
/// The check compares the presented token with every accepted one, each comparison over
/// every byte, so that how long it takes says nothing about how much of a token was right or
/// which token came close. (It does depend on the lengths involved, which a token's
/// strength must not rest on.)
struct BearerTokens: Sendable {
    private let tokens: [[UInt8]]

    init(_ tokens: [String]) {
        self.tokens = tokens.map { Array($0.utf8) }
    }

    /// Whether any token is configured (no token: every call is admitted).
    var isEnabled: Bool { !tokens.isEmpty }

    /// The token of an `authorization` value `Bearer <token>` (the scheme in any case, as
    /// RFC 6750 allows), or nil if the value is not a bearer credential.
    static func token(inAuthorization value: String) -> Substring? {
        let scheme = "bearer "
        guard value.utf8.count > scheme.utf8.count,
              value.prefix(scheme.count).lowercased() == scheme else { return nil }
        return value.dropFirst(scheme.count).drop { $0 == " " }
    }

    /// Whether `authorization` (the call's metadata value, if any) carries an accepted token.
    func admits(authorization: String?) -> Bool {
        !isEnabled || acceptedToken(authorization: authorization) != nil
    }

    /// Which accepted token (its index) `authorization` carries; nil if none.
    func acceptedToken(authorization: String?) -> Int? {
        guard isEnabled, let authorization, let presented = Self.token(inAuthorization: authorization) else { return nil }
        let bytes = Array(presented.utf8)
        var matched: Int?
        for (index, token) in tokens.enumerated() {
            // No early exit: every configured token is compared in full.
            if Self.constantTimeEqual(bytes, token) { matched = index }
        }
        return matched
    }

    /// Compares two byte strings over every byte of the longer, folding any difference
    /// (lengths included) into one accumulator.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt(bitPattern: a.count ^ b.count)
        let length = max(a.count, b.count)
        for index in 0..<length {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= UInt(x ^ y)
        }
        return difference == 0
    }
}
