/// Told what the log's writer does, for a node's metrics: the log itself keeps no histograms.
///
/// Called on the thread that writes or syncs (the writer thread, or an event loop committing its
/// own batch), once per write call and once per fsync, never per record: an implementation must
/// be cheap and must not block.
public protocol WALObserver: Sendable {
    /// One write of `records` records, `bytes` bytes long, reached the active segment (one group
    /// commit, or the part of one that fit before a rotation).
    func wrote(records: Int, bytes: Int)
    /// An fsync of the active segment returned, successfully or not, after `duration`.
    func synced(duration: Duration)
}
