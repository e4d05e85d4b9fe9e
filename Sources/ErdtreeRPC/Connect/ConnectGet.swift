/// A Connect GET (connectrpc.com/docs/protocol, "Unary-Get-Request"): a unary call of a method
/// without side effects whose whole request is in the query.
enum ConnectGet {
    /// A Connect GET's query (connectrpc.com/docs/protocol, "Unary-Get-Request"): the message,
    /// percent-encoded or (with `base64=1`) URL-safe base64, in the codec `encoding` names;
    /// `compression` (returned, for `ConnectUnary`); `connect`, when given, `v1`. Other
    /// parameters are ignored.
    static func parse(query: Substring) -> Result<
        (codec: ConnectProtocol.Codec, body: [UInt8], compression: String?), RPCStatus
    > {
        var parameters: [String: [UInt8]] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard let name = percentDecode(parts[0]), let value = percentDecode(parts.count > 1 ? parts[1] : "") else {
                return .failure(RPCStatus(.invalidArgument, "the query is not valid percent-encoding"))
            }
            parameters[String(decoding: name, as: UTF8.self)] = value
        }
        func text(_ name: String) -> String? { parameters[name].map { String(decoding: $0, as: UTF8.self) } }
        if let version = text("connect"), version != "v1" {
            return .failure(RPCStatus(.invalidArgument, "connect=\(version) is not v1"))
        }
        let codec: ConnectProtocol.Codec
        switch text("encoding") {
        case "json": codec = .json
        case "proto": codec = .proto
        case nil: return .failure(RPCStatus(.invalidArgument, "a Connect GET needs encoding=json or encoding=proto"))
        case let other?: return .failure(RPCStatus(.invalidArgument, "encoding=\(other) is not json or proto"))
        }
        guard var message = parameters["message"] else {
            return .failure(RPCStatus(.invalidArgument, "a Connect GET needs the message parameter"))
        }
        if text("base64") == "1" {
            guard let decoded = Base64.decode(String(decoding: message, as: UTF8.self)) else {
                return .failure(RPCStatus(.invalidArgument, "message is not base64"))
            }
            message = decoded
        }
        return .success((codec, message, text("compression")))
    }

    /// Query-component percent-decoding (`+` is a space, as in forms); nil when malformed.
    static func percentDecode(_ text: Substring) -> [UInt8]? {
        var out: [UInt8] = []
        var bytes = text.utf8.makeIterator()
        while let byte = bytes.next() {
            switch byte {
            case UInt8(ascii: "+"): out.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = bytes.next().flatMap(hexValue), let low = bytes.next().flatMap(hexValue) else {
                    return nil
                }
                out.append(high << 4 | low)
            default: out.append(byte)
            }
        }
        return out
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
