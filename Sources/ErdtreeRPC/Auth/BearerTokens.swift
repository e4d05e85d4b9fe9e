import ErdtreeSync

/// Permissions a caller holds, as bits the node gives meaning to (its roles grant sets of them;
/// each method needs one). ErdtreeRPC only checks that a caller holds what a route needs.
public struct Grants: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32

    public init(rawValue: UInt32) { self.rawValue = rawValue }
}

/// What a route needs of its caller, and how a refusal says so ("role write or admin").
public struct AccessRequirement: Sendable {
    public let grant: Grants
    /// Who holds the grant, for the PERMISSION_DENIED message.
    public let holders: String

    public init(grant: Grants, holders: String) {
        self.grant = grant
        self.holders = holders
    }
}

/// A caller a token identified: the token's name and role, never its secret.
public final class Principal: Sendable {
    public let name: String
    public let role: String
    public let grants: Grants

    public init(name: String, role: String, grants: Grants) {
        self.name = name
        self.role = role
        self.grants = grants
    }
}

/// What a request's `authorization` field showed.
enum Credential {
    case none
    /// Not `Bearer <token>`.
    case malformed
    /// A bearer token no configured token matches.
    case unknown
    case known(Principal)
}

/// The bearer tokens a server accepts, each with the principal it identifies.
///
/// Replaced whole on reload (SIGHUP): a request sees the old table or the new one, and a
/// revoked token stops working on connections that are already open. Every comparison takes
/// time that depends on the presented token's length only, never on how much of a secret it
/// matched (a timing oracle would let a client guess a token byte by byte).
public final class BearerTokens: Sendable {
    public struct Token: Sendable {
        public let secret: [UInt8]
        public let principal: Principal

        public init(secret: [UInt8], principal: Principal) {
            self.secret = secret
            self.principal = principal
        }
    }

    private let table: Locked<[Token]>

    public init(_ tokens: [Token]) {
        table = Locked(tokens)
    }

    public func replace(with tokens: [Token]) {
        table.withLock { $0 = tokens }
    }

    public var names: [String] { table.withLock { $0.map(\.principal.name) } }

    /// Reads an `authorization` field's value.
    func authenticate(_ value: UnsafeRawBufferPointer) -> Credential {
        // `Bearer ` with the scheme's letters in any case (RFC 9110 §11.1): one masked load.
        guard value.count > Self.schemeLength,
            (value.loadUnaligned(as: UInt64.self) | Self.lowercase) & Self.firstSeven == Self.scheme
        else { return .malformed }
        var end = value.count
        while end > Self.schemeLength, value[end - 1] == UInt8(ascii: " ") || value[end - 1] == UInt8(ascii: "\t") {
            end -= 1
        }
        guard end > Self.schemeLength, let base = value.baseAddress else { return .malformed }
        let presented = UnsafeRawBufferPointer(start: base + Self.schemeLength, count: end - Self.schemeLength)
        let tokens = table.withLock { $0 }
        var found: Principal?
        for token in tokens where Self.matches(presented, token.secret) {
            found = token.principal
        }
        return found.map { .known($0) } ?? .unknown
    }

    /// "bearer " as a little-endian word; or-ing 0x20 into its six letters lower-cases them
    /// (and turns no other byte into a letter of it), and the eighth byte is the token's.
    private static let schemeLength = 7
    private static let scheme: UInt64 = 0x0020_7265_7261_6562
    private static let lowercase: UInt64 = 0x0000_2020_2020_2020
    private static let firstSeven: UInt64 = 0x00FF_FFFF_FFFF_FFFF

    /// Constant-time in the secret's content: a presented token of the secret's length is
    /// compared whole, eight bytes at a time, with no early exit. A length that differs fails
    /// at once, as Go's `subtle.ConstantTimeCompare` does: the length of a token says nothing
    /// of its bytes (`openssl rand -hex 32` always makes 64).
    static func matches(_ presented: UnsafeRawBufferPointer, _ secret: [UInt8]) -> Bool {
        guard presented.count == secret.count, !secret.isEmpty else { return false }
        return secret.withUnsafeBytes { secret in
            var difference: UInt64 = 0
            var i = 0
            while i + 8 <= secret.count {
                difference |=
                    presented.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    ^ secret.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                i += 8
            }
            while i < secret.count {
                difference |= UInt64(presented[i] ^ secret[i])
                i += 1
            }
            return difference == 0
        }
    }
}

extension Credential {
    /// Why a call needing `requirement` is refused, or nil when it may go on.
    func refusal(of requirement: AccessRequirement, path: String) -> RPCStatus? {
        switch self {
        case .none:
            return RPCStatus(.unauthenticated, "\(path) needs a bearer token (authorization: Bearer <token>)")
        case .malformed:
            return RPCStatus(.unauthenticated, "the authorization field is not 'Bearer <token>'")
        case .unknown:
            return RPCStatus(.unauthenticated, "the bearer token is not known to this server")
        case .known(let principal):
            guard !principal.grants.isSuperset(of: requirement.grant) else { return nil }
            return RPCStatus(
                .permissionDenied,
                "token '\(principal.name)' has role \(principal.role), which may not call \(path); it needs \(requirement.holders)"
            )
        }
    }
}
