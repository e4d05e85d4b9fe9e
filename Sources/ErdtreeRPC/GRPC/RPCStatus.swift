/// A gRPC status: a code and a human-readable message.
///
/// The codes are the canonical ones of `grpc/doc/statuscodes.md`; Connect maps the same
/// codes to its own names and HTTP statuses, so one type serves both protocols.
public struct RPCStatus: Error, Sendable, Equatable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: Int

        public init(rawValue: Int) { self.rawValue = rawValue }

        public static let ok = Code(rawValue: 0)
        public static let cancelled = Code(rawValue: 1)
        public static let unknown = Code(rawValue: 2)
        public static let invalidArgument = Code(rawValue: 3)
        public static let deadlineExceeded = Code(rawValue: 4)
        public static let notFound = Code(rawValue: 5)
        public static let alreadyExists = Code(rawValue: 6)
        public static let permissionDenied = Code(rawValue: 7)
        public static let resourceExhausted = Code(rawValue: 8)
        public static let failedPrecondition = Code(rawValue: 9)
        public static let aborted = Code(rawValue: 10)
        public static let outOfRange = Code(rawValue: 11)
        public static let unimplemented = Code(rawValue: 12)
        public static let `internal` = Code(rawValue: 13)
        public static let unavailable = Code(rawValue: 14)
        public static let dataLoss = Code(rawValue: 15)
        public static let unauthenticated = Code(rawValue: 16)

        private static let names = [
            "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
            "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
            "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
            "UNAUTHENTICATED",
        ]

        /// The canonical upper-case name, e.g. `INVALID_ARGUMENT`.
        public var description: String {
            Self.names.indices.contains(rawValue) ? Self.names[rawValue] : "CODE_\(rawValue)"
        }
    }

    public var code: Code
    public var message: String
    /// The metadata, boxed and nil when empty: a status is copied several times per call, and a
    /// nil reference costs those copies nothing where an empty dictionary (or string) in the
    /// struct costs a retain and a release or a value-witness copy each (callgrind: ~150
    /// instructions per Get).
    private var box: MetadataBox?

    public init(_ code: Code, _ message: String = "", metadata: [String: String] = [:]) {
        self.code = code
        self.message = message
        box = metadata.isEmpty ? nil : MetadataBox(metadata)
    }

    /// Response metadata that goes with the status (lower-case names): gRPC trailers, Connect
    /// response headers (unary) or end-stream metadata (streaming). Errors that point elsewhere
    /// use it, e.g. a slave naming its master.
    public var metadata: [String: String] {
        get { box?.fields ?? [:] }
        set { box = newValue.isEmpty ? nil : MetadataBox(newValue) }
    }

    public static func == (lhs: RPCStatus, rhs: RPCStatus) -> Bool {
        lhs.code == rhs.code && lhs.message == rhs.message && lhs.metadata == rhs.metadata
    }

    public static let ok = RPCStatus(.ok)

    public var description: String {
        message.isEmpty ? "\(code)" : "\(code): \(message)"
    }
}

/// `RPCStatus.metadata`'s storage: immutable, so statuses share it.
private final class MetadataBox: Sendable {
    let fields: [String: String]

    init(_ fields: [String: String]) { self.fields = fields }
}
