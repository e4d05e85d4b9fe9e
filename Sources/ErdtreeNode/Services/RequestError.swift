/// Why a request is refused before anything is done: its arguments break a limit or a rule.
///
/// The services (and `KVClient`, before sending) check requests and throw these; the status
/// (always INVALID_ARGUMENT) and its message come from `NodeError+Status.swift`.
enum RequestError: Error, Equatable {
    /// A KVStore key of no bytes; `limit` is `max_key_bytes`.
    case emptyKey(limit: Int)
    case keyTooLong(limit: Int, actual: Int)
    case keyNotUTF8
    /// protobuf-c would cut the key at its NUL byte; see `requestKey` in KVStoreMessages.swift.
    case keyContainsNUL
    case valueTooLarge(limit: Int, actual: Int)
    case negativeTTL(Int64)
    /// The TTL puts the expiry past 9999-12-31, which `expires_at_ms` readers cannot format.
    case ttlTooLarge(Int64)
    /// A field that must be set was left empty; `field` is `Message.field_name`.
    case emptyField(String)
    /// A replication `Hello` whose `replication_id` is neither empty nor 32 hex digits.
    case badReplicationID(String)
    /// A `host:port` field that does not parse.
    case badAddress(field: String, ConfigError)
    /// A message whose oneof is not set; `fields` names what it may hold.
    case emptyOneof(String, fields: String)
}
