import Synchronization

/// One `append` call waiting for the writer thread.
struct PendingAppend: Sendable {
    var op: WALOp
    var key: [UInt8]
    var value: [UInt8]
    var expiresAtMs: Int64
    var timestampMs: Int64
    var completion: @Sendable (Result<UInt64, WALError>) -> Void
}

/// What the public `WriteAheadLog` and its writer thread share.
final class WALSharedState: Sendable {
    struct Queue {
        var pending: [PendingAppend] = []
        /// Set once by `close`; later appends fail with `.closed` without being queued.
        var closed = false
    }

    let queue = Mutex(Queue())
    let wakeup = WakeupSignal()
    /// Every segment in LSN order, the active one last. Only the writer thread appends.
    let segments: Mutex<[SegmentFile]>
    /// Last LSN written to the kernel; stored after the segment's `committedBytes`.
    let lastLSN: Atomic<UInt64>
    /// Last LSN known to be fsynced.
    let durableLSN: Atomic<UInt64>
    /// Tests only: an errno the next batch write fails with after writing half its bytes.
    let injectedWriteErrno = Atomic<Int32>(0)

    init(segments: [SegmentFile], lastLSN: UInt64) {
        self.segments = Mutex(segments)
        self.lastLSN = Atomic(lastLSN)
        self.durableLSN = Atomic(lastLSN)
    }
}
