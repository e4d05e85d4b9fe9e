import ErdtreeRPC
internal import Foundation

/// Reads the secrets `auth.tokens` and `master.token_file` point at. Errors name the key and
/// the file, never what is in it.
public enum TokenFiles {
    /// Shorter secrets are refused: a guessable token is worse than none, because it looks safe.
    static let minimumLength = 16

    /// Reads every token of `auth`.
    /// - Throws: `ConfigError` naming the `auth.tokens[i]` item: an unreadable file, a secret
    ///   that is empty, too short or shared by two tokens.
    static func load(_ auth: NodeConfig.Auth, source: String) throws(ConfigError) -> [BearerTokens.Token] {
        var tokens: [BearerTokens.Token] = []
        for (index, token) in auth.tokens.enumerated() {
            let key = "auth.tokens[\(index)].token_file"
            let secret = try read(token.tokenFile, key: key, source: source)
            if let other = tokens.firstIndex(where: { $0.secret == secret }) {
                throw .invalidValue(
                    key: key, value: token.tokenFile,
                    reason: "holds the same secret as auth.tokens[\(other)]; each token needs its own", file: source)
            }
            let principal = Principal(name: token.name, role: token.role.rawValue, grants: token.role.grants)
            tokens.append(BearerTokens.Token(secret: secret, principal: principal))
        }
        return tokens
    }

    /// One secret: the file's text without surrounding whitespace (a trailing newline is usual).
    public static func read(_ path: String, key: String, source: String) throws(ConfigError) -> [UInt8] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason =
                (error as NSError).userInfo[NSUnderlyingErrorKey].flatMap { $0 as? POSIXError }
                .map { String(cString: strerror($0.code.rawValue)) } ?? "cannot be read"
            throw .invalidValue(key: key, value: path, reason: "cannot read the token: \(reason)", file: source)
        }
        let secret = Array(data.drop { isSpace($0) }.reversed().drop { isSpace($0) }.reversed())
        guard secret.count >= minimumLength else {
            throw .invalidValue(
                key: key, value: path,
                reason: "the token in it is \(secret.isEmpty ? "empty" : "shorter than \(minimumLength) bytes")",
                file: source)
        }
        guard secret.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw .invalidValue(
                key: key, value: path,
                reason: "the token must be printable ASCII without spaces (it travels in an HTTP header)",
                file: source)
        }
        return secret
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
            || byte == UInt8(ascii: "\t")
    }
}
