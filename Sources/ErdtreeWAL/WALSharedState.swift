import ErdtreeSync
import Synchronization

/// One `append` call waiting for the writer thread.
struct PendingAppend: Sendable {
    var op: WALOp
    var key: [UInt8]
    var value: [UInt8]
    var expiresAtMs: Int64
    var timestampMs: Int64
    /// The LSN the record must get (a replica copying its master's log), or 0 for the next one.
    var lsn: UInt64 = 0
    var completion: @Sendable (Result<WALAppended, WALError>) -> Void
}

/// What the writer encodes of a record: a queued append or a replica's record.
protocol AppendedRecord {
    var lsn: UInt64 { get }
    var timestampMs: Int64 { get }
    var op: WALOp { get }
    var expiresAtMs: Int64 { get }
    var key: [UInt8] { get }
    var value: [UInt8] { get }
}

extension PendingAppend: AppendedRecord {}
extension WALRecord: AppendedRecord {}

/// Every segment in LSN order, the active one last, and the same segments by number.
struct SegmentTable {
    private(set) var ordered: [SegmentFile]
    private var byID: [UInt32: SegmentFile]

    init(_ segments: [SegmentFile]) {
        ordered = segments
        byID = Dictionary(uniqueKeysWithValues: segments.map { ($0.id, $0) })
    }

    subscript(id id: UInt32) -> SegmentFile? { byID[id] }

    /// Makes `segment` resolvable by number before it takes its place in `ordered`.
    mutating func register(_ segment: SegmentFile) {
        byID[segment.id] = segment
    }

    mutating func append(_ segment: SegmentFile) {
        ordered.append(segment)
        byID[segment.id] = segment
    }

    /// Swaps the oldest `count` segments for `replacements` (compaction's output, same LSN range).
    mutating func replacePrefix(_ count: Int, with replacements: [SegmentFile]) {
        for segment in ordered[0..<count] { byID[segment.id] = nil }
        ordered.replaceSubrange(0..<count, with: replacements)
        for segment in replacements { byID[segment.id] = segment }
    }
}

/// What the public `WriteAheadLog` and its writer thread share.
final class WALSharedState: Sendable {
    struct Queue {
        var pending: [PendingAppend] = []
        /// Set once by `close`; later appends fail with `.closed` without being queued.
        var closed = false
    }

    let queue = Locked(Queue())
    let wakeup = WakeupSignal()
    /// Every segment in LSN order, the active one last. Only the writer thread appends; only
    /// compaction replaces (a prefix of sealed segments).
    let segments: Locked<SegmentTable>
    /// The oldest LSN `entries(since:)` can still return: the first LSN after what compaction
    /// rewrote (1 when nothing was compacted). Older positions need a snapshot.
    let oldestStreamableLSN: Atomic<UInt64>
    /// Last LSN written to the kernel; stored after the segment's `committedBytes`.
    let lastLSN: Atomic<UInt64>
    /// Last LSN known to be fsynced.
    let durableLSN: Atomic<UInt64>
    /// Last LSN whose completion has returned: whatever a completion does with its record (the
    /// node applies it to the store) is done for every LSN up to this one.
    let completedLSN: Atomic<UInt64>
    /// The history's id, in every segment header. Changes only when an empty log adopts its
    /// master's (`WriteAheadLog.adoptReplicationID`).
    let replicationID: Locked<[UInt8]>
    /// Called on the writer thread with the last LSN after each batch that wrote something.
    let commitObserver = Locked<CommitObserver?>(nil)
    /// Called on the writer thread with the durable LSN after each fsync that advanced it.
    let durableObserver = Locked<LSNObserver?>(nil)
    /// Set by the append that must see to `commitQueued` being called (the first one not
    /// handed to the writer thread since the last such commit); cleared by that commit.
    let commitClaimed = Atomic<Bool>(false)
    #if ERDTREE_FAILPOINTS
        /// An errno the next batch write fails with after writing half its bytes
        /// (`WriteAheadLog.failNextWrite`, failpoint builds only).
        let injectedWriteErrno = Atomic<Int32>(0)
    #endif

    init(segments: [SegmentFile], lastLSN: UInt64, oldestStreamableLSN: UInt64, replicationID: [UInt8]) {
        self.replicationID = Locked(replicationID)
        self.segments = Locked(SegmentTable(segments))
        self.oldestStreamableLSN = Atomic(oldestStreamableLSN)
        self.lastLSN = Atomic(lastLSN)
        self.durableLSN = Atomic(lastLSN)
        self.completedLSN = Atomic(lastLSN)
    }
}

/// A callback kept behind a lock, boxed: copying a bare closure out of `withLock` wraps it
/// in one more reabstraction thunk and stores that back, so a closure read on every commit grew
/// a chain that made each commit slower than the last (measured: masters lost half their write
/// throughput within a few million writes). A class reference copies as a reference.
final class LSNObserver: Sendable {
    let call: @Sendable (UInt64) -> Void

    init(_ call: @escaping @Sendable (UInt64) -> Void) {
        self.call = call
    }
}

/// The commit observer, boxed like `LSNObserver`; it receives the records just committed.
final class CommitObserver: Sendable {
    let call: @Sendable ([WALRecord]) -> Void

    init(_ call: @escaping @Sendable ([WALRecord]) -> Void) {
        self.call = call
    }
}
