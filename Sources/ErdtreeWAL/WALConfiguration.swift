/// When the writer thread calls `fsync` on the active segment.
///
/// `.always` fsyncs every group-committed batch before any of its callers is completed: an
/// acknowledged write survives power loss. `.interval(d)` fsyncs at most every `d` (also when the
/// log goes idle), like Redis `appendfsync everysec`: a power failure loses at most the last `d`
/// of acknowledged writes, a process crash loses nothing (the bytes are already in the kernel).
public enum WALSyncPolicy: Sendable, Equatable {
    case always
    case interval(Duration)
}

/// Where the log lives and how it writes.
public struct WALConfiguration: Sendable {
    /// Directory holding the segments; created with its parents when missing.
    public var directory: String
    public var syncPolicy: WALSyncPolicy
    /// A segment is sealed and a new one started once it reaches this size. A batch is split
    /// across segments at record boundaries, so a segment exceeds it only by its last record.
    /// The module accepts any positive size up to `maxFileSizeLimit`; the configuration layer
    /// enforces a sane minimum.
    public var maxFileSizeBytes: Int64
    /// Told of every write and fsync (a node's metrics); nil: nobody is.
    public var observer: (any WALObserver)?

    /// The largest segment size the log uses: record locations hold 32-bit offsets, so a larger
    /// configured size is cut down to this.
    public static let maxFileSizeLimit: Int64 = 1 << 30

    /// `maxFileSizeBytes` within `1...maxFileSizeLimit`.
    var effectiveMaxFileSizeBytes: Int64 { min(max(1, maxFileSizeBytes), Self.maxFileSizeLimit) }

    public init(
        directory: String,
        syncPolicy: WALSyncPolicy = .interval(.seconds(1)),
        maxFileSizeBytes: Int64 = 64 << 20,
        observer: (any WALObserver)? = nil
    ) {
        self.observer = observer
        self.directory = directory
        self.syncPolicy = syncPolicy
        self.maxFileSizeBytes = maxFileSizeBytes
    }
}
