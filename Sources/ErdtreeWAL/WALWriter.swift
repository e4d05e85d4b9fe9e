import ErdtreeSync
import Logging
import Synchronization

/// The writer thread's half of the log: group commit, rotation and fsync.
///
/// Its state is guarded by `lock` (hence `@unchecked Sendable`). The writer thread holds it for
/// each batch: a wake-up drains the whole queue, encodes the batch into one reused buffer,
/// writes it with one call per segment it lands in, fsyncs per policy, then completes the
/// callers in LSN order on this thread. A replica's batch (`commitReplicated`) takes the same
/// lock and is written on the caller's thread instead, with no hand-off to the writer thread
/// and back; only its fsync is left to the writer thread.
///
/// Invariant: the active file is exactly `size` bytes, all of them whole records, whenever the
/// writer is between batches. A failed write is cut back to `size`; if that cut fails the writer
/// stops accepting writes (`poisoned`) instead of leaving a damaged record in the middle of the log.
final class WALWriter: @unchecked Sendable {
    private let shared: WALSharedState
    private let directory: String
    private let syncPolicy: WALSyncPolicy
    private let maxFileSizeBytes: Int64
    private let logger: Logger
    private let observer: (any WALObserver)?

    /// The segment being written.
    private var active: ActiveSegment
    private var lastLSN: UInt64
    private var syncState = SyncState()
    /// Set when the log can no longer be kept consistent; every later append fails with it.
    private var poisoned: WALError?

    /// Guards everything below and the active file. Never held while waiting for work, nor
    /// during an interval fsync (so appends go on while the disk syncs).
    private let lock = Lock()
    /// Held around an fsync done outside `lock` and around closing a descriptor, so a
    /// rotation never closes the file such an fsync is still on.
    private let syncLock = Lock()
    /// Set by `finish`: the file is closed and every later append fails with `.closed`.
    private var finished = false
    private var scratch = BatchScratch()

    /// The active segment's file and what has been committed to it.
    private struct ActiveSegment {
        var fd: Int32
        var segment: SegmentFile
        /// Committed size of the active segment.
        var size: Int64
        /// Where the last sparse-index point was taken.
        var indexedOffset: Int64
    }

    /// What the next fsync is waiting for.
    private struct SyncState {
        /// Bytes were written since the last fsync.
        var needed = false
        var last = ContinuousClock.now
        /// A replica's batch was written under `.always`; the writer thread fsyncs it.
        var requested = false
    }

    /// Storage reused from batch to batch, each refilled rather than reallocated once grown: a
    /// new array per commit is a large allocation, and those make glibc consolidate its free
    /// lists.
    private struct BatchScratch {
        var batch: [PendingAppend] = []
        var buffer: [UInt8] = []
        var points: [SegmentFile.IndexPoint] = []
        /// Where each record of `batch` was written, by batch index.
        var locations: [WALLocation] = []
        /// The commit observer's record list.
        var committed: [WALRecord] = []
    }

    init(
        shared: WALSharedState,
        configuration: WALConfiguration,
        logger: Logger,
        activeFD: Int32,
        active: SegmentFile,
        lastLSN: UInt64
    ) {
        self.shared = shared
        self.directory = configuration.directory
        self.syncPolicy = configuration.syncPolicy
        self.maxFileSizeBytes = configuration.effectiveMaxFileSizeBytes
        self.logger = logger
        self.observer = configuration.observer
        self.active = ActiveSegment(
            fd: activeFD, segment: active, size: active.committedBytes.load(ordering: .relaxed),
            indexedOffset: Int64(RecordFormat.headerSize))
        self.lastLSN = lastLSN
    }

    /// The thread's body: returns after `close` once everything queued is written and completed.
    func run() {
        while true {
            let (closing, timeout, due) = lock.withLock { () -> (Bool, Duration?, PendingSync?) in
                let closing = shared.queue.withLock { queue in
                    swap(&queue.pending, &scratch.batch)
                    return queue.closed
                }
                if !scratch.batch.isEmpty {
                    commit()
                    scratch.batch.removeAll(keepingCapacity: true)
                }
                if closing {
                    finish()
                    return (true, nil, nil)
                }
                return (false, syncTimeout(), takeDueSync())
            }
            if closing { return }
            if let due {
                // Outside `lock`: a `1s` log fsyncs a second of writes at a time, which may take
                // a while on a busy disk, and appends (an event loop's or this thread's next
                // batch) must not wait for it.
                let result = syncLock.withLock {
                    Result { () throws(WALError) in try fsync(due.fd, path: due.path) }
                }
                lock.withLock {
                    switch result {
                    case .success: advanceDurable(to: due.lsn)
                    case .failure(let error):
                        poison(error, because: "fsync failed, so earlier writes may not be on disk")
                    }
                }
                continue
            }
            shared.wakeup.wait(timeout: timeout)
        }
    }

    /// Commits what is queued on the calling thread, for callers that append with
    /// `byCaller: true` and finish their turn here (an event loop), instead of handing the
    /// batch to the writer thread and being handed the completions back. Completions run here.
    func commitQueued() {
        lock.withLock {
            guard !finished else { return }
            shared.commitClaimed.store(false, ordering: .sequentiallyConsistent)
            shared.queue.withLock { queue in swap(&queue.pending, &scratch.batch) }
            guard !scratch.batch.isEmpty else { return }
            let wasSynced = !syncState.needed
            commit()
            scratch.batch.removeAll(keepingCapacity: true)
            wakeWriterForSync(wasSynced: wasSynced)
        }
    }

    /// After a write on another thread: the writer thread sleeps without a deadline while
    /// nothing is unsynced, so the first unsynced write (or a requested fsync) must wake it to
    /// start the interval clock.
    private func wakeWriterForSync(wasSynced: Bool) {
        if syncState.requested || (wasSynced && syncState.needed) { shared.wakeup.raise() }
    }

    // MARK: Batches

    private func commit() {
        let firstLSN = lastLSN + 1
        var (written, failure) = write(scratch.batch)
        if written > 0, syncPolicy == .always {
            sync()
            if let poisoned {
                // Nothing is acknowledged once the log's state on disk is unknown.
                failure = poisoned
                written = 0
            }
        }
        if written > 0, let observer = shared.commitObserver.withLock({ $0 }) {
            // The records as committed (keys and values are shared, not copied), so replication
            // can push them without reading the segment back. Before the completions: the
            // batch then leaves for the slaves ahead of the answers to its writers, so a client
            // that reads a slave right after its write was answered rarely arrives first.
            for (index, item) in scratch.batch.prefix(written).enumerated() {
                scratch.committed.append(
                    WALRecord(
                        lsn: firstLSN + UInt64(index), timestampMs: item.timestampMs, op: item.op,
                        expiresAtMs: item.expiresAtMs, key: item.key, value: item.value))
            }
            observer.call(scratch.committed)
            scratch.committed.removeAll(keepingCapacity: true)
        }
        for (index, item) in scratch.batch.enumerated() {
            if index < written {
                item.completion(
                    .success(WALAppended(lsn: firstLSN + UInt64(index), location: scratch.locations[index])))
            } else {
                item.completion(.failure(failure ?? .closed))
            }
        }
        shared.completedLSN.store(lastLSN, ordering: .releasing)
    }

    /// Writes a replica's batch (every record at its master's LSN) on the calling thread, then
    /// calls `apply` for each record written, in order, before counting it completed. Under
    /// `.always` the fsync is the writer thread's (`durableLSN` and the durable observer report
    /// it), so the caller never waits for the disk.
    ///
    /// - Returns: how many records were written and applied (all of them, unless it throws).
    /// - Throws: `.closed`, `.lsnMismatch` (nothing written), or the write error that stopped the
    ///   batch — after applying the records written before it.
    func commitReplicated(_ records: [WALRecord], apply: (Int, WALLocation) -> Void) throws(WALError) {
        let failure: WALError? = lock.withLock {
            if finished { return .closed }
            let wasSynced = !syncState.needed
            let (written, failure) = write(records)
            if written > 0, syncPolicy == .always { syncState.requested = true }
            wakeWriterForSync(wasSynced: wasSynced)
            for index in 0..<written { apply(index, scratch.locations[index]) }
            shared.completedLSN.store(lastLSN, ordering: .releasing)
            if written > 0, let observer = shared.commitObserver.withLock({ $0 }) {
                observer.call(written == records.count ? records : Array(records.prefix(written)))
            }
            return failure
        }
        if let failure { throw failure }
    }

    /// Writes `items` at the next LSNs, rotating as segments fill, and fills `scratch.locations`. Returns
    /// how many were written and acknowledgeable (none once the log is poisoned), and the error
    /// that stopped the rest. Never fsyncs except when rotating.
    private func write<Item: AppendedRecord>(_ items: [Item]) -> (written: Int, failure: WALError?) {
        if let poisoned { return (0, poisoned) }
        let firstLSN = lastLSN + 1
        // A replica's appends carry the master's LSNs; they must continue this log exactly.
        for (index, item) in items.enumerated() where item.lsn != 0 && item.lsn != firstLSN + UInt64(index) {
            return (0, WALError.lsnMismatch(expected: firstLSN + UInt64(index), got: item.lsn))
        }
        scratch.locations.removeAll(keepingCapacity: true)
        var next = 0
        var failure: WALError?
        while next < items.count {
            if active.size >= maxFileSizeBytes {
                do throws(WALError) {
                    try rotate()
                } catch {
                    failure = error
                    break
                }
            }
            if let error = writeChunk(items, from: &next) {
                failure = error
                break
            }
        }
        let written = Int(lastLSN - (firstLSN - 1))
        if let poisoned {
            // Nothing is acknowledged once the log's state on disk is unknown.
            return (0, poisoned)
        }
        return (written, failure)
    }

    /// Encodes records from `items[next...]` until the active segment would be full, writes them
    /// with one call, and publishes them. Returns the error when the write failed.
    private func writeChunk<Item: AppendedRecord>(_ items: [Item], from next: inout Int) -> WALError? {
        scratch.buffer.removeAll(keepingCapacity: true)
        scratch.points.removeAll(keepingCapacity: true)
        let chunkStart = next
        var lsn = lastLSN
        var indexed = active.indexedOffset
        repeat {
            let item = items[next]
            lsn += 1
            let offset = active.size + Int64(scratch.buffer.count)
            if offset - indexed >= SegmentFile.indexSpacingBytes {
                scratch.points.append(.init(lsn: lsn, offset: offset))
                indexed = offset
            }
            let recordSize = RecordFormat.recordSize(keyCount: item.key.count, valueCount: item.value.count)
            scratch.locations.append(
                WALLocation(segment: active.segment.id, offset: UInt32(offset), length: UInt32(recordSize)))
            RecordFormat.appendRecord(
                lsn: lsn,
                timestampMs: item.timestampMs,
                op: item.op,
                expiresAtMs: item.expiresAtMs,
                key: item.key,
                value: item.value,
                to: &scratch.buffer
            )
            next += 1
        } while next < items.count && active.size + Int64(scratch.buffer.count) < maxFileSizeBytes

        let path = active.segment.path
        #if ERDTREE_FAILPOINTS
            let injected = shared.injectedWriteErrno.exchange(0, ordering: .relaxed)
        #endif
        let failure: WALError? = scratch.buffer.withUnsafeBytes { bytes in
            do throws(WALError) {
                #if ERDTREE_FAILPOINTS
                    try System.write(active.fd, bytes, path: path, failingWith: injected)
                #else
                    try System.write(active.fd, bytes, path: path)
                #endif
                return nil
            } catch {
                return error
            }
        }
        if let failure {
            scratch.locations.removeLast(next - chunkStart)
            rollBack(after: failure, records: next - chunkStart)
            return failure
        }
        active.size += Int64(scratch.buffer.count)
        observer?.wrote(records: next - chunkStart, bytes: scratch.buffer.count)
        active.segment.committedBytes.store(active.size, ordering: .releasing)
        active.segment.addIndexPoints(scratch.points)
        active.indexedOffset = indexed
        lastLSN = lsn
        shared.lastLSN.store(lsn, ordering: .releasing)
        syncState.needed = true
        return nil
    }

    /// Cuts the active segment back to its last committed size after a failed write, so that no
    /// part of the failed chunk survives and its LSNs can be given to later records.
    private func rollBack(after failure: WALError, records: Int) {
        do throws(WALError) {
            try System.ftruncate(active.fd, length: active.size, path: active.segment.path)
            logger.error(
                "WAL write failed; the batch was not written",
                metadata: [
                    "error": "\(failure)", "segment": "\(active.segment.path)", "records": "\(records)",
                    "next_lsn": "\(lastLSN + 1)",
                ]
            )
        } catch {
            poison(error, because: "could not cut a failed write back to offset \(active.size)")
        }
    }

    // MARK: Rotation and sync

    /// Seals the active segment (fsync, close) and starts the next one at `lastLSN + 1`.
    ///
    /// The new file is complete (header written and fsynced, directory fsynced) before the old
    /// one is closed, so a failure here leaves the old segment active and the log unchanged.
    private func rotate() throws(WALError) {
        sync()
        if let poisoned { throw poisoned }
        let (segment, newFD) = try SegmentFile.create(
            directory: directory,
            firstLSN: lastLSN + 1,
            replicationID: shared.replicationID.withLock { $0 }
        )
        let closed = syncLock.withLock {
            Result { () throws(WALError) in try System.close(active.fd, path: active.segment.path) }
        }
        if case .failure(let error) = closed {
            logger.warning("Closing a sealed WAL segment failed", metadata: ["error": "\(error)"])
        }
        logger.debug("WAL segment sealed", metadata: ["sealed": "\(active.segment.path)", "active": "\(segment.path)"])
        active = ActiveSegment(
            fd: newFD, segment: segment, size: Int64(RecordFormat.headerSize),
            indexedOffset: Int64(RecordFormat.headerSize))
        shared.segments.withLock { $0.append(segment) }
    }

    /// An fsync to run outside `lock`: the file and the last LSN written before it started.
    private struct PendingSync {
        var fd: Int32
        var lsn: UInt64
        var path: String
    }

    /// The fsync due now (asked for by a replica's batch under `.always`, or the interval is
    /// up), marked as started; nil when none is due.
    private func takeDueSync() -> PendingSync? {
        guard syncState.needed, poisoned == nil else {
            syncState.requested = false
            return nil
        }
        var due = syncState.requested
        if case .interval(let interval) = syncPolicy, ContinuousClock.now - syncState.last >= interval { due = true }
        guard due else { return nil }
        syncState.requested = false
        syncState.needed = false
        syncState.last = .now
        return PendingSync(fd: active.fd, lsn: lastLSN, path: active.segment.path)
    }

    /// Syncs the active file under `lock`: before rotating or closing it, and under `.always`.
    private func sync() {
        guard syncState.needed, poisoned == nil else { return }
        do throws(WALError) {
            try fsync(active.fd, path: active.segment.path)
            syncState.needed = false
            syncState.last = .now
            advanceDurable(to: lastLSN)
        } catch {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on disk is
            // unknown, so the log must not pretend later writes are durable (PostgreSQL's fsyncgate).
            poison(error, because: "fsync failed, so earlier writes may not be on disk")
        }
    }

    /// The fsyncs that make appends durable, timed for the observer (rotation's and recovery's
    /// are not: they are rare and not what a writer waits for).
    private func fsync(_ fd: Int32, path: String) throws(WALError) {
        guard let observer else { return try System.fsync(fd, path: path) }
        let start = ContinuousClock.now
        defer { observer.synced(duration: ContinuousClock.now - start) }
        try System.fsync(fd, path: path)
    }

    /// An fsync outside `lock` may finish after a later one under it: durability only moves up.
    private func advanceDurable(to lsn: UInt64) {
        guard lsn > shared.durableLSN.load(ordering: .acquiring) else { return }
        shared.durableLSN.store(lsn, ordering: .releasing)
        if let observer = shared.durableObserver.withLock({ $0 }) { observer.call(lsn) }
    }

    /// How long the writer may sleep before an `.interval` sync falls due; nil when nothing is unsynced.
    private func syncTimeout() -> Duration? {
        guard case .interval(let interval) = syncPolicy, syncState.needed else { return nil }
        let remaining = interval - (ContinuousClock.now - syncState.last)
        return remaining > .zero ? remaining : .zero
    }

    private func poison(_ error: WALError, because reason: String) {
        poisoned = error
        logger.critical(
            "WAL stopped accepting writes: \(reason); restart to recover",
            metadata: ["error": "\(error)", "segment": "\(active.segment.path)"]
        )
    }

    private func finish() {
        finished = true
        sync()
        do throws(WALError) {
            try System.close(active.fd, path: active.segment.path)
        } catch {
            logger.warning("Closing the active WAL segment failed", metadata: ["error": "\(error)"])
        }
    }
}
