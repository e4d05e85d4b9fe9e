import Synchronization

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

    private let table: Mutex<[Token]>

    public init(_ tokens: [Token]) {
        table = Mutex(tokens)
    }

    public func replace(with tokens: [Token]) {
        table.withLock { $0 = tokens }
    }

    public var names: [String] { table.withLock { $0.map(\.principal.name) } }

    /// Reads an `authorization` field's value.
    func authenticate(_ value: UnsafeRawBufferPointer) -> Credential {
        let scheme = "bearer "
        // The scheme is case-insensitive (RFC 9110 §11.1); the token is everything after it.
        guard value.count > scheme.utf8.count,
            zip(value, scheme.utf8).allSatisfy({ $0 | 0x20 == $1 | 0x20 })
        else { return .malformed }
        var presented = UnsafeRawBufferPointer(rebasing: value.dropFirst(scheme.utf8.count))
        while let last = presented.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") {
            presented = UnsafeRawBufferPointer(rebasing: presented.dropLast())
        }
        guard !presented.isEmpty else { return .malformed }
        let tokens = table.withLock { $0 }
        var found: Principal?
        for token in tokens where Self.matches(presented, token.secret) {
            found = token.principal
        }
        return found.map { .known($0) } ?? .unknown
    }

    /// Constant-time in the secret: every byte of the presented token is compared, whatever
    /// came before, and nothing returns early.
    static func matches(_ presented: UnsafeRawBufferPointer, _ secret: [UInt8]) -> Bool {
        guard !secret.isEmpty else { return false }
        var difference: UInt8 = presented.count == secret.count ? 0 : 1
        secret.withUnsafeBufferPointer { secret in
            for i in 0..<presented.count {
                difference |= presented[i] ^ secret[i % secret.count]
            }
        }
        return difference == 0
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
