import NIOHTTP1

/// The Connect protocol's unary rules (connectrpc.com/docs/protocol): codecs by content type,
/// error codes by name with their HTTP statuses, and the error body.
enum ConnectProtocol {
    enum Codec {
        case proto
        case json

        var contentType: String {
            switch self {
            case .proto: "application/proto"
            case .json: "application/json"
            }
        }
    }

    /// The codec of a unary request's `content-type` (parameters such as `charset=utf-8` allowed
    /// for JSON); nil when Connect unary does not take it.
    static func codec(contentType: String) -> Codec? {
        // A media type holds no blanks, so dropping them trims it.
        let media = contentType.split(separator: ";", maxSplits: 1).first?
            .filter { $0 != " " && $0 != "\t" }.lowercased()
        switch media {
        case "application/proto": return .proto
        case "application/json": return .json
        default: return nil
        }
    }

    /// Connect's name for a code (`invalid_argument`).
    static func name(_ code: RPCStatus.Code) -> String {
        code == .cancelled ? "canceled" : code.description.lowercased()
    }

    /// The HTTP status Connect gives an error code.
    static func httpStatus(_ code: RPCStatus.Code) -> HTTPResponseStatus {
        switch code {
        case .cancelled: .custom(code: 499, reasonPhrase: "Client Closed Request")
        case .invalidArgument, .failedPrecondition, .outOfRange: .badRequest
        case .deadlineExceeded: .gatewayTimeout
        case .notFound: .notFound
        case .alreadyExists, .aborted: .conflict
        case .permissionDenied: .forbidden
        case .resourceExhausted: .tooManyRequests
        case .unimplemented: .notImplemented
        case .unavailable: .serviceUnavailable
        case .unauthenticated: .unauthorized
        default: .internalServerError
        }
    }

    /// The JSON error body: `{"code":"…","message":"…"}` (no message member when empty).
    static func errorBody(_ status: RPCStatus) -> [UInt8] {
        var out = Array(#"{"code":"#.utf8)
        JSONWriter.appendString(name(status.code), to: &out)
        if !status.message.isEmpty {
            out.append(contentsOf: Array(#","message":"#.utf8))
            JSONWriter.appendString(status.message, to: &out)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
