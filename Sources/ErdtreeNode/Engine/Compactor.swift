import ErdtreeSync
import ErdtreeWAL
import Glibc
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Keeps the WAL's disk use bounded: rewrites old segments with only their live records.
///
/// Every `interval` it weighs the compactable segments — every sealed segment except the newest
/// ones totalling at most `wal.retention`, which stay as written so that slaves and `GetUpdates`
/// can stream from them (docs/replication.md) — against the store: a record is live when its
/// key's index entry still points at it. When their dead bytes are at least half of them and at
/// least one `wal.max_file_size`, it compacts them (`KVEngine.compact`) on the blocking thread
/// pool, relocating the index entries of the records it moves. The half-dead rule bounds the work:
/// each byte rewritten pays for at least one byte reclaimed. Expired keys the sweep reclaimed
/// and deleted keys count as dead; keys that expired but were not swept yet still count as live.
/// Weighing takes a pass over every key (`KVEngine.liveBytesBySegment()`), skipped while the
/// compactable segments are too small to matter and spaced `scanBackoff` times its own duration
/// apart, so a large idle store is not rescanned every second.
public final class Compactor: Sendable {
    public static let interval = TimeAmount.seconds(1)

    /// Which segments one compaction replaces and what it should reclaim.
    struct Plan: Equatable {
        /// How many of the oldest segments to replace.
        var count: Int
        var recordBytes: Int64
        var deadBytes: Int64
    }

    private let engine: KVEngine
    private let retentionBytes: Int64
    private let minDeadBytes: Int64
    private let logger: Logger
    private let task: Locked<RepeatedTask?> = Locked(nil)
    private let running = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    private let finished = Atomic<UInt64>(0)
    private let lastFinishedMs = Atomic<Int64>(0)
    /// When the next pass over the index may start; runs on one pool thread at a time.
    private let nextScan = Locked<ContinuousClock.Instant>(.now)

    /// A pass over the index costs O(keys); waiting this many times its duration before the next
    /// one keeps the compactor's share of a core near 1/20 however large the store.
    static let scanBackoff = 20

    /// Built by `ServerNode`, which calls `start` once; `retentionBytes` is `wal.retention` and
    /// `minDeadBytes` is `wal.max_file_size`.
    public init(engine: KVEngine, retentionBytes: Int64, minDeadBytes: Int64, logger: Logger) {
        self.engine = engine
        self.retentionBytes = retentionBytes
        self.minDeadBytes = minDeadBytes
        self.logger = logger
    }

    /// Compactions finished since start.
    public var compactions: UInt64 { finished.load(ordering: .relaxed) }

    /// When the last compaction finished, Unix milliseconds; 0 if none since start.
    public var lastCompactionMs: Int64 { lastFinishedMs.load(ordering: .relaxed) }

    /// Bytes of records in all segments that no key's index entry points at.
    public func deadBytes() -> Int64 {
        let live = engine.liveBytesBySegment()
        return engine.segments.reduce(0) { $0 + max(0, $1.recordBytes - (live[$1.id] ?? 0)) }
    }

    public func start(on eventLoop: any EventLoop) {
        let repeated = eventLoop.scheduleRepeatedTask(initialDelay: Self.interval, delay: Self.interval) {
            [self] _ in
            guard !stopped.load(ordering: .relaxed),
                running.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged
            else { return }
            NIOThreadPool.singleton.submit { [self] _ in
                defer { running.store(false, ordering: .releasing) }
                guard !stopped.load(ordering: .relaxed) else { return }
                runOnce()
            }
        }
        task.withLock { $0 = repeated }
    }

    /// Cancels future runs and waits for one in progress to finish.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        task.withLock { task in
            task?.cancel()
            task = nil
        }
        while running.load(ordering: .acquiring) {
            usleep(10_000)
        }
    }

    /// Compacts if the plan says so. Blocking: runs on a thread-pool thread.
    /// - Returns: what the compaction did, or nil when nothing was due.
    @discardableResult
    func runOnce() -> WALCompactionResult? {
        let segments = engine.segments
        // Without enough compactable bytes no amount of dead ones reaches the threshold: skip
        // the pass over the index.
        let compactable = Self.compactable(segments, retentionBytes: retentionBytes)
        guard compactable.reduce(0, { $0 + $1.recordBytes }) >= minDeadBytes else { return nil }
        let scanStarted = ContinuousClock.now
        guard nextScan.withLock({ $0 }) <= scanStarted else { return nil }
        let live = engine.liveBytesBySegment()
        let scanned = ContinuousClock.now - scanStarted
        nextScan.withLock { $0 = ContinuousClock.now + scanned * Self.scanBackoff }
        guard
            let plan = Self.plan(
                segments: segments, live: live, retentionBytes: retentionBytes, minDeadBytes: minDeadBytes)
        else { return nil }
        let started = ContinuousClock.now
        do {
            guard let result = try engine.compact(segments: plan.count) else { return nil }
            finished.add(1, ordering: .relaxed)
            lastFinishedMs.store(WallClock.nowMs(), ordering: .relaxed)
            logger.info(
                "WAL compacted",
                metadata: [
                    "segments_in": "\(result.segmentsIn)", "bytes_in": "\(result.bytesIn)",
                    "segments_out": "\(result.segmentsOut)", "bytes_out": "\(result.bytesOut)",
                    "records_in": "\(result.recordsIn)", "records_kept": "\(result.recordsKept)",
                    "lsn_range": "\(result.firstLSN)-\(result.lastLSN)",
                    "ms": "\(Int((ContinuousClock.now - started) / .milliseconds(1)))",
                ])
            return result
        } catch {
            logger.error("WAL compaction failed", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Which prefix of `segments` (oldest first, the active one last) to compact, if any.
    ///
    /// The newest sealed segments totalling at most `retentionBytes` are kept as written; of the
    /// older ones, the plan takes them all once their dead bytes reach both half their record
    /// bytes and `minDeadBytes`.
    static func plan(
        segments: [WALSegmentInfo], live: [UInt32: Int64], retentionBytes: Int64, minDeadBytes: Int64
    ) -> Plan? {
        let candidates = compactable(segments, retentionBytes: retentionBytes)
        guard !candidates.isEmpty else { return nil }
        let recordBytes = candidates.reduce(Int64(0)) { $0 + $1.recordBytes }
        let deadBytes = candidates.reduce(Int64(0)) { $0 + max(0, $1.recordBytes - (live[$1.id] ?? 0)) }
        guard deadBytes >= minDeadBytes, deadBytes * 2 >= recordBytes else { return nil }
        return Plan(count: candidates.count, recordBytes: recordBytes, deadBytes: deadBytes)
    }

    /// The oldest segments outside the retention window: every sealed one but the newest
    /// totalling at most `retentionBytes`.
    static func compactable(_ segments: [WALSegmentInfo], retentionBytes: Int64) -> ArraySlice<WALSegmentInfo> {
        let sealed = segments.filter { !$0.active }
        var retained: Int64 = 0
        var count = sealed.count
        while count > 0, retained + sealed[count - 1].bytes <= retentionBytes {
            retained += sealed[count - 1].bytes
            count -= 1
        }
        return sealed[0..<count]
    }
}
