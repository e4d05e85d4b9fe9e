/// A `host:port` pair as a user writes it: `127.0.0.1:8080`, `master:8080` or `[::1]:8080`.
///
/// Used for `master.address` in config files and for the CLI's `--server` flag. The host is kept
/// as written (a name or an IP literal, without brackets) and is resolved only when dialling, so a
/// config that names a host which is not up yet still loads.
public struct SocketAddressSpec: Sendable, Hashable, CustomStringConvertible {
    /// A DNS name or an IPv4/IPv6 literal, without the brackets IPv6 needs in `host:port`.
    public var host: String
    /// 1...65535; port 0 cannot be dialled.
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, or `[ipv6]:port`.
    ///
    /// - Parameter text: The address as the user wrote it; surrounding whitespace is ignored.
    /// - Throws: `ConfigError.invalidAddress(input:reason:)` naming `text` and what is wrong with it.
    public init(parsing text: String) throws(ConfigError) {
        let input = ConfigUnits.trimmed(text)
        func invalid(_ reason: String) -> ConfigError { .invalidAddress(input: text, reason: reason) }
        let example = "expected host:port, such as 127.0.0.1:8080 or [::1]:8080"

        guard !input.isEmpty else { throw invalid("it is empty; \(example)") }
        guard !input.contains("://") else { throw invalid("it has a scheme; \(example)") }
        guard !input.contains(where: { $0 == " " || $0 == "\t" || $0 == "/" }) else {
            throw invalid("it contains a space or a '/'; \(example)")
        }

        let host: Substring
        let portText: Substring
        if input.hasPrefix("[") {
            guard let close = input.firstIndex(of: "]") else {
                throw invalid("the '[' has no matching ']'; \(example)")
            }
            host = input[input.index(after: input.startIndex)..<close]
            let afterBracket = input[input.index(after: close)...]
            guard afterBracket.first == ":" else { throw invalid("it has no port after ']'; \(example)") }
            portText = afterBracket.dropFirst()
        } else {
            guard let colon = input.lastIndex(of: ":") else { throw invalid("it has no port; \(example)") }
            host = input[..<colon]
            portText = input[input.index(after: colon)...]
            guard !host.contains(":") else {
                throw invalid("an IPv6 address must be in brackets, such as [::1]:8080")
            }
        }
        guard !host.isEmpty else { throw invalid("it has no host; \(example)") }
        guard !portText.isEmpty else { throw invalid("it has no port; \(example)") }
        guard portText.allSatisfy(ConfigUnits.isDigit), let port = Int(portText), (1...65535).contains(port)
        else { throw invalid("the port '\(portText)' is not a number from 1 to 65535") }

        self.host = String(host)
        self.port = port
    }

    /// `host:port`, with brackets around an IPv6 host so the result parses back.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}
