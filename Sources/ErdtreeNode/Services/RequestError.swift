import ErdtreeRPC

/// Why a KVStore request is refused before anything is written. The one place where
/// request validation turns into a gRPC/Connect status.
enum RequestError: Error, CustomStringConvertible {
    case emptyKey(limit: Int)
    case keyTooLong(limit: Int, actual: Int)
    case keyNotUTF8
    case keyContainsNUL
    case valueTooLarge(limit: Int, actual: Int)
    case negativeTTL(Int64)
    case ttlTooLarge(Int64)

    var description: String {
        switch self {
        case .emptyKey(let limit):
            "key must not be empty (keys are 1 to \(limit) bytes of UTF-8)"
        case .keyTooLong(let limit, let actual):
            "key is \(actual) bytes; the limit is \(limit) bytes (max_key_bytes)"
        case .keyNotUTF8:
            "key is not valid UTF-8"
        case .keyContainsNUL:
            "key contains a NUL byte (U+0000), which keys cannot hold"
        case .valueTooLarge(let limit, let actual):
            "value is \(actual) bytes; the limit is \(limit) bytes (max_value_bytes)"
        case .negativeTTL(let ttl):
            "ttl_ms must be 0 (no expiry) or positive, got \(ttl)"
        case .ttlTooLarge(let ttl):
            "ttl_ms \(ttl) puts the expiry past the year 9999"
        }
    }

    /// Every refusal is about the request's own arguments, so INVALID_ARGUMENT; an
    /// oversized *message* is RESOURCE_EXHAUSTED, and the transport decides that.
    var status: RPCStatus { RPCStatus(.invalidArgument, description) }
}
