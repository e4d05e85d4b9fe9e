import NIOHTTP1

/// The Connect protocol's rules shared by unary and streaming calls
/// (connectrpc.com/docs/protocol): codecs by content type, error codes by name with their HTTP
/// statuses, the error body, and the request fields both kinds of call read.
enum ConnectProtocol {
    enum Codec: Equatable {
        case proto
        case json

        var contentType: String {
            switch self {
            case .proto: "application/proto"
            case .json: "application/json"
            }
        }
    }

    /// What `content-encoding` (and a GET's `compression`) may name.
    static let encodings = "gzip, identity"

    /// Answers smaller than this go uncompressed: gzip's header and CPU cost more than it saves.
    static let compressMinBytes = 1024

    /// The codec whose media type (`[proto, json]`, in that order) `value` names, optionally
    /// followed by parameters, read from the header bytes (no string per request).
    static func codec(_ value: UnsafeRawBufferPointer, among mediaTypes: [StaticString]) -> Codec? {
        for (mediaType, codec) in zip(mediaTypes, [Codec.proto, .json]) {
            let length = mediaType.utf8CodeUnitCount
            let expected = UnsafeBufferPointer(start: mediaType.utf8Start, count: length)
            guard value.count >= length, zip(value.prefix(length), expected).allSatisfy({ $0 | 0x20 == $1 | 0x20 })
            else { continue }
            let rest = value.dropFirst(length)
            if rest.isEmpty || rest.first == UInt8(ascii: ";") || rest.first == UInt8(ascii: " ") { return codec }
        }
        return nil
    }

    /// `connect-timeout-ms` (at most 10 digits) in nanoseconds; nil when absent.
    static func timeoutNanos(_ header: String?) -> Result<Int64?, RPCStatus> {
        guard let header else { return .success(nil) }
        guard header.count <= 10, let milliseconds = Int64(header), milliseconds >= 0 else {
            return .failure(RPCStatus(.invalidArgument, "connect-timeout-ms \(header) is not 0-10 digits"))
        }
        return .success(milliseconds * 1_000_000)
    }

    /// Whether an `accept-encoding` list offers gzip (with no `q=0`).
    static func namesGzip(_ list: String?) -> Bool {
        guard let list else { return false }
        return list.split(separator: ",").contains { item in
            let parts = item.split(separator: ";").map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
            return parts.first == "gzip" && !parts.dropFirst().contains { $0 == "q=0" || $0 == "q=0.0" }
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
