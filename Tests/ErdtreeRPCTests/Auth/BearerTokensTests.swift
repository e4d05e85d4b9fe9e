import Testing

@testable import ErdtreeRPC

/// Reading `authorization: Bearer <token>` and matching it: the scheme, case and whitespace
/// rules, unknown and malformed values, and reload replacing the table.
@Suite struct BearerTokensTests {
    static let reader = Principal(name: "app", role: "read", grants: Grants(rawValue: 1))
    static let secret = Array("0123456789abcdef0123".utf8)

    func credential(_ value: String, tokens: BearerTokens) -> Credential {
        var value = value
        return value.withUTF8 { tokens.authenticate(UnsafeRawBufferPointer($0)) }
    }

    func name(_ credential: Credential) -> String {
        switch credential {
        case .none: "none"
        case .malformed: "malformed"
        case .unknown: "unknown"
        case .known(let principal): principal.name
        }
    }

    @Test(arguments: [
        ("Bearer 0123456789abcdef0123", "app"),
        ("bearer 0123456789abcdef0123", "app"),
        ("BEARER 0123456789abcdef0123  ", "app"),
        ("Bearer 0123456789abcdef012", "unknown"),
        ("Bearer 0123456789abcdef01234", "unknown"),
        ("Bearer 0123456789abcdef0124", "unknown"),
        ("Basic 0123456789abcdef0123", "malformed"),
        ("Bearer ", "malformed"),
        ("0123456789abcdef0123", "malformed"),
    ])
    func authorizationValues(value: String, expected: String) {
        let tokens = BearerTokens([.init(secret: Self.secret, principal: Self.reader)])
        #expect(name(credential(value, tokens: tokens)) == expected)
    }

    @Test func reloadReplacesTheTable() {
        let tokens = BearerTokens([.init(secret: Self.secret, principal: Self.reader)])
        let rotated = Array("fedcba9876543210fedc".utf8)
        tokens.replace(with: [.init(secret: rotated, principal: Self.reader)])
        #expect(name(credential("Bearer 0123456789abcdef0123", tokens: tokens)) == "unknown")
        #expect(name(credential("Bearer fedcba9876543210fedc", tokens: tokens)) == "app")
    }

    @Test func refusalsSayWhatIsMissingWithoutEchoingTheToken() throws {
        let requirement = AccessRequirement(grant: Grants(rawValue: 2), holders: "a token with role write")
        let denied = try #require(Credential.known(Self.reader).refusal(of: requirement, path: "/s/Set"))
        #expect(denied.code == .permissionDenied)
        #expect(
            denied.message == "token 'app' has role read, which may not call /s/Set; it needs a token with role write")
        #expect(Credential.none.refusal(of: requirement, path: "/s/Set")?.code == .unauthenticated)
        #expect(Credential.unknown.refusal(of: requirement, path: "/s/Set")?.code == .unauthenticated)
        let allowed = Principal(name: "w", role: "write", grants: Grants(rawValue: 3))
        #expect(Credential.known(allowed).refusal(of: requirement, path: "/s/Set") == nil)
    }
}
