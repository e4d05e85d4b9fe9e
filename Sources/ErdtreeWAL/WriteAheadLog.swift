import ErdtreeSync
import Glibc
import Logging
import Synchronization

/// The write-ahead log: every write the master accepts, in LSN order, in segment files on disk.
///
/// Layout: `configuration.directory` holds segments named `<first LSN, 20 digits>.log`
/// (`00000000000000000001.log`, then e.g. `00000000000000052812.log` once the first one reached
/// `maxFileSizeBytes`). Each starts with a header (magic, format version, first LSN, replication
/// id) followed by records; docs/wal-format.md has the bytes. Only the newest segment is written;
/// the others are sealed (fsynced and never written again).
///
/// Writes: `append` queues a record; one writer thread drains the queue on each wake-up (group
/// commit), assigns consecutive LSNs, writes the batch with one `write` per segment it lands in,
/// fsyncs per `WALSyncPolicy`, then runs the completions in LSN order on the writer thread.
/// Under an interval policy callers may commit instead (`append(byCaller:)`, then
/// `commitQueued()`: a master's event loop, once per turn), and a replica's batch, already
/// grouped by its master, is written on the caller's thread (`append(replicated:apply:)`);
/// the writer thread then only fsyncs, outside the log's lock.
///
/// Reads: `entries(since:limit:)` reads from any thread, only bytes the writer has committed.
public final class WriteAheadLog: Sendable {
    let shared: WALSharedState
    let writerThread: Locked<pthread_t?>
    /// The writer's state, for replicated batches written on the caller's thread; `reset`
    /// replaces it along with the thread.
    let writer: Locked<WALWriter>
    let configuration: WALConfiguration
    let logger: Logger
    let directory: String
    let maxFileSizeBytes: Int64
    /// Set while a compaction runs; one at a time.
    let compactionRunning = Atomic<Bool>(false)
    /// A failure after a compaction committed: the rest is left to recovery, and compaction stops
    /// until a restart.
    let compactionStoppedBy = Locked<WALError?>(nil)
    /// The history this log belongs to: 128 random bits in hex, chosen when the first segment is
    /// created and kept in every segment header, so it is stable across restarts.
    public var replicationID: String { hexString(replicationIDBytes) }

    var replicationIDBytes: [UInt8] { shared.replicationID.withLock { $0 } }

    private init(
        shared: WALSharedState, writerThread: pthread_t, writer: WALWriter, configuration: WALConfiguration,
        logger: Logger
    ) {
        self.shared = shared
        self.writerThread = Locked(writerThread)
        self.writer = Locked(writer)
        self.configuration = configuration
        self.logger = logger
        self.directory = configuration.directory
        self.maxFileSizeBytes = configuration.effectiveMaxFileSizeBytes
    }

    deinit {
        close()
    }

    /// Opens the log in `configuration.directory`, recovers it, and starts the writer thread.
    ///
    /// The directory is created with its parents when missing (each parent fsynced). Recovery
    /// replays every record of every segment in LSN order through `replay`, synchronously, before
    /// this returns. Its rules:
    /// - Segments are read in order of first LSN; each header must be valid, carry the first LSN its
    ///   name states and the first segment's replication id, and continue the previous segment's LSNs.
    /// - Each record's LSN must be the previous one plus one; a gap or repeat is corruption.
    /// - A newest segment holding only part of its header (the process died while rotating) is
    ///   deleted, logged, and the previous segment becomes the active one.
    /// - In the newest segment only, a short or checksum-bad record with no valid record at any later
    ///   offset is a torn write: its bytes are saved to `<segment>.broken`, the segment is truncated
    ///   to the last whole record and fsynced, a warning names file, offset and LSN, and the log opens.
    /// - Anything else refuses to start: `.corruptRecord` or `.badSegmentHeader` naming the file, the
    ///   offset and the LSN. Nothing is dropped silently.
    /// - An empty directory starts a fresh log (first LSN 1) with a new replication id.
    ///
    /// - Parameters:
    ///   - configuration: Where the log lives, the sync policy and the segment size.
    ///   - logger: Receives recovery progress (about once a second), repairs, and write failures.
    ///   - replay: Called once per recovered record with where it sits, in LSN order, on the
    ///     calling thread.
    /// - Returns: The open log and what recovery found.
    /// - Throws: `WALError` when the log is corrupt or the disk refuses.
    public static func open(
        _ configuration: WALConfiguration,
        logger: Logger,
        replay: (WALRecord, WALLocation) -> Void
    ) throws(WALError) -> (WriteAheadLog, WALRecoveryReport) {
        let recovered = try WALRecovery(directory: configuration.directory, logger: logger).run(replay: replay)
        guard let active = recovered.segments.last else {
            preconditionFailure("recovery always leaves an active segment")
        }
        let shared = WALSharedState(
            segments: recovered.segments, lastLSN: recovered.lastLSN,
            oldestStreamableLSN: recovered.oldestStreamableLSN, replicationID: recovered.replicationID)
        let writer = WALWriter(
            shared: shared,
            configuration: configuration,
            logger: logger,
            activeFD: recovered.activeFD,
            active: active,
            lastLSN: recovered.lastLSN
        )
        let thread: pthread_t
        do throws(WALError) {
            thread = try System.startThread(path: configuration.directory) { writer.run() }
        } catch {
            try? System.close(recovered.activeFD, path: active.path)
            throw error
        }
        let log = WriteAheadLog(
            shared: shared, writerThread: thread, writer: writer, configuration: configuration, logger: logger)
        return (log, recovered.report)
    }

    /// The last LSN written to the kernel (visible to `entries`, survives a process crash).
    public var lastLSN: UInt64 {
        shared.lastLSN.load(ordering: .acquiring)
    }

    /// Segments on disk and the bytes they hold (written bytes only), for status reports.
    public var diskUsage: (segments: Int, bytes: Int64) {
        let segments = shared.segments.withLock { $0.ordered }
        let bytes = segments.reduce(Int64(0)) { $0 + $1.committedBytes.load(ordering: .relaxed) }
        return (segments.count, bytes)
    }

    /// Every segment, oldest first: its number (`WALLocation.segment`), committed bytes (header
    /// included), whether compaction wrote it and whether it is the active one.
    public var segments: [WALSegmentInfo] {
        let segments = shared.segments.withLock { $0.ordered }
        return segments.enumerated().map { index, segment in
            WALSegmentInfo(
                id: segment.id, firstLSN: segment.firstLSN,
                bytes: segment.committedBytes.load(ordering: .relaxed),
                compacted: segment.compacted, active: index == segments.count - 1)
        }
    }

    /// The oldest LSN `entries(since:)` still returns; older positions get `resyncRequired`
    /// because compaction dropped their records.
    public var oldestStreamableLSN: UInt64 {
        shared.oldestStreamableLSN.load(ordering: .acquiring)
    }

    /// The last LSN whose `append` completion has returned.
    public var completedLSN: UInt64 {
        shared.completedLSN.load(ordering: .acquiring)
    }

    /// The last LSN known to be fsynced (survives power loss).
    public var durableLSN: UInt64 {
        shared.durableLSN.load(ordering: .acquiring)
    }

    /// Queues one record.
    ///
    /// The writer assigns the LSN (the next after the last written: LSNs start at 1 and never
    /// repeat), writes the batch, fsyncs first under `.always`, then calls `completion` on the
    /// writer thread with the LSN. It never completes before the bytes reached the kernel, and
    /// completions run in LSN order. When the write fails, `completion` gets `.failure` and the log
    /// is left as before the batch: nothing of it is on disk or acknowledged, and its LSNs go to
    /// later records. After `close`, `completion` runs at once on the calling thread with `.closed`.
    ///
    /// Completions run on the committing thread (the writer, or a `byCaller` appender in
    /// `commitQueued`) under the log's lock and hold up the next batch: keep them short, and never
    /// commit from one (`commitQueued`, `append(replicated:apply:)` would wait for that lock).
    ///
    /// `lsn` (a replica copying its master's log) makes the record take exactly that LSN: when it
    /// does not continue the log, the whole batch it lands in fails with `.lsnMismatch` and nothing
    /// of it is written. 0, the default, takes the next LSN.
    ///
    /// `byCaller` leaves the writer thread asleep: the record waits in the queue for a
    /// `commitQueued()` on the caller's side, and the completions run there (see
    /// `callersCommit`). Returns true when this append is the one that must see to that call
    /// (the first since the last such commit); others ride along with it.
    @discardableResult
    public func append(
        op: WALOp,
        key: [UInt8],
        value: [UInt8],
        expiresAtMs: Int64,
        timestampMs: Int64,
        lsn: UInt64 = 0,
        byCaller: Bool = false,
        completion: @escaping @Sendable (Result<WALAppended, WALError>) -> Void
    ) -> Bool {
        let item = PendingAppend(
            op: op,
            key: key,
            value: value,
            expiresAtMs: expiresAtMs,
            timestampMs: timestampMs,
            lsn: lsn,
            completion: completion
        )
        let accepted = shared.queue.withLock { queue in
            guard !queue.closed else { return false }
            queue.pending.append(item)
            return true
        }
        guard accepted else {
            completion(.failure(.closed))
            return false
        }
        guard byCaller else {
            shared.wakeup.raise()
            return false
        }
        return shared.commitClaimed.compareExchange(
            expected: false, desired: true, ordering: .sequentiallyConsistent
        ).exchanged
    }

    /// Whether appenders should commit their own batches (`append(byCaller: true)`, then
    /// `commitQueued()` at the end of their turn): true under an interval sync policy, where a
    /// batch is answered without an fsync, so writing it on an event loop costs one `write`
    /// and saves two thread hand-offs per batch (to the writer thread and back); false under
    /// `.always`, whose fsync must not hold up an event loop.
    public var callersCommit: Bool {
        if case .interval = configuration.syncPolicy { return true }
        return false
    }

    /// Writes everything queued on the calling thread, as the writer thread would (one group
    /// commit; completions run here, in LSN order, before it returns). The interval fsync stays
    /// the writer thread's and never holds this up.
    public func commitQueued() {
        writer.withLock { $0 }.commitQueued()
    }

    /// Writes a replica's batch, every record at its own (the master's) LSN, on the calling
    /// thread: one `write` per segment it lands in, no hand-off to the writer thread. `apply` then
    /// runs for each record written (index, location), in order, before the log counts it
    /// completed, so a reader never sees `completedLSN` ahead of what was applied. The fsync is
    /// left to the writer thread (at once under `.always`, else on its interval): watch
    /// `durableLSN` or `onDurable`.
    ///
    /// Blocks on the log's lock while the writer thread commits a batch of its own; do not call
    /// it from an `append` completion.
    ///
    /// - Throws: `.lsnMismatch` when the records do not continue the log (nothing is written),
    ///   `.closed` after `close`, or the error of a failed write, after `apply` has run for the
    ///   records written before it (the rest are not on disk).
    public func append(replicated records: [WALRecord], apply: (Int, WALLocation) -> Void) throws(WALError) {
        guard !records.isEmpty else { return }
        let writer = writer.withLock { $0 }
        try writer.commitReplicated(records, apply: apply)
    }

    /// Makes an empty log (nothing appended, one segment) part of the history `hex`: a slave's
    /// new log taking its master's id before the first entry arrives. Rewrites the segment's
    /// header in place and fsyncs it; a crash midway leaves a header-only segment with a bad
    /// header, which recovery deletes (rule 4) and replaces with a fresh log.
    ///
    /// - Throws: `.badSegmentHeader` when `hex` is not 32 hex digits or the log is not empty,
    ///   `.io` when the rewrite fails.
    public func adoptReplicationID(_ hex: String) throws(WALError) {
        let segments = shared.segments.withLock { $0.ordered }
        guard let id = Self.bytes(ofHex: hex), id.count == RecordFormat.replicationIDSize else {
            throw .badSegmentHeader(segment: directory, reason: "replication id \"\(hex)\" is not 32 hex digits")
        }
        guard lastLSN == 0, segments.count == 1, let segment = segments.first,
            segment.committedBytes.load(ordering: .acquiring) == Int64(RecordFormat.headerSize)
        else {
            throw .badSegmentHeader(
                segment: directory, reason: "only an empty log can take another history's id, and this one has records")
        }
        let header = RecordFormat.encodeHeader(.init(firstLSN: segment.firstLSN, replicationID: id))
        let fd = try System.open(segment.path, flags: O_WRONLY)
        do throws(WALError) {
            let written = header.withUnsafeBytes { Glibc.pwrite(fd, $0.baseAddress, $0.count, 0) }
            guard written == header.count else { throw .io(call: "pwrite", path: segment.path, errno: errno) }
            try System.fsync(fd, path: segment.path)
            try System.close(fd, path: segment.path)
        } catch {
            try? System.close(fd, path: segment.path)
            throw error
        }
        shared.replicationID.withLock { $0 = id }
    }

    static func bytes(ofHex hex: String) -> [UInt8]? {
        let digits = Array(hex.utf8)
        guard digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case 0x30...0x39: digit - 0x30
            case 0x61...0x66: digit - 0x61 + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: digits.count, by: 2) {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
        }
        return bytes
    }

    /// Calls `observer` on the writer thread with the records of every batch that wrote some, in
    /// LSN order, after the write (and its fsync under `.always`) and just before the batch's
    /// completions run (replication pushes them to slaves ahead of the answers). Replaces
    /// any earlier observer; nil removes it, so that the writer builds no record list while no
    /// one listens. Keep it short, like a completion.
    public func onCommit(_ observer: (@Sendable ([WALRecord]) -> Void)?) {
        let boxed = observer.map(CommitObserver.init)
        shared.commitObserver.withLock { $0 = boxed }
    }

    /// Calls `observer` on the writer thread with the durable LSN after every fsync that advanced
    /// it (a slave acks durability with it). Replaces any earlier observer; keep it short.
    public func onDurable(_ observer: (@Sendable (UInt64) -> Void)?) {
        let boxed = observer.map(LSNObserver.init)
        shared.durableObserver.withLock { $0 = boxed }
    }

    /// Records with `lsn > since`, in LSN order, at most `limit`, from sealed and active segments.
    ///
    /// Safe from any thread while the writer runs: it reads only bytes the writer has committed
    /// (written to the kernel), starting from the segment and indexed offset nearest `since + 1`.
    /// `resyncRequired` is set when `since + 1` is older than `oldestStreamableLSN`, i.e. the records
    /// the caller needs were dropped by compaction and it needs a snapshot instead.
    ///
    /// - Throws: `.corruptRecord` when a committed record does not decode, `.io` when a read fails.
    public func entries(since: UInt64, limit: Int) throws(WALError) -> WALEntries {
        let last = lastLSN
        let segments = shared.segments.withLock { $0.ordered }
        guard let oldest = segments.first else { return WALEntries(records: [], resyncRequired: false, lastLSN: last) }
        let wanted = since &+ 1
        if max(oldest.firstLSN, oldestStreamableLSN) > wanted {
            return WALEntries(records: [], resyncRequired: true, lastLSN: last)
        }
        guard limit > 0, since < last else { return WALEntries(records: [], resyncRequired: false, lastLSN: last) }

        // The last segment whose first LSN is at or before the wanted one holds it.
        var low = 0
        var high = segments.count
        while low < high {
            let middle = (low + high) / 2
            if segments[middle].firstLSN <= wanted { low = middle + 1 } else { high = middle }
        }
        var records: [WALRecord] = []
        records.reserveCapacity(min(limit, 4096))
        for segment in segments[max(0, low - 1)...] where records.count < limit {
            try read(segment, since: since, limit: limit, into: &records)
        }
        return WALEntries(records: records, resyncRequired: false, lastLSN: max(last, records.last?.lsn ?? 0))
    }

    private func read(_ segment: SegmentFile, since: UInt64, limit: Int, into records: inout [WALRecord])
        throws(WALError)
    {
        let end = segment.committedBytes.load(ordering: .acquiring)
        let start = segment.startOffset(forLSN: since &+ 1)
        guard start < end else { return }
        let fd = try segment.descriptor()
        let reader = SegmentReader(fd: fd, path: segment.path, start: start, end: end, chunkBytes: 256 << 10)
        while records.count < limit, let event = try reader.next() {
            switch event {
            case .record(let record, _, _):
                if record.lsn > since { records.append(record) }
            case .tornTail(let offset):
                throw .corruptRecord(
                    segment: segment.path,
                    offset: offset,
                    lsn: nil,
                    reason: "a committed record is cut short at offset \(end)"
                )
            case .corrupt(let offset, let lsn, let reason):
                throw .corruptRecord(segment: segment.path, offset: offset, lsn: lsn, reason: reason)
            }
        }
    }

    /// Reads the record at `location` with one positioned read.
    ///
    /// Safe from any thread. A location from before a compaction that has since finished names a
    /// segment that no longer exists: `.segmentGone`, and the caller looks the key up again.
    ///
    /// - Throws: `.segmentGone`, `.corruptRecord` when the bytes there are not the whole record the
    ///   location promises, `.io` when the read fails.
    public func read(at location: WALLocation) throws(WALError) -> WALRecord {
        guard let segment = shared.segments.withLock({ $0[id: location.segment] }) else {
            throw .segmentGone(location.segment)
        }
        return try segment.record(at: Int64(location.offset), length: Int(location.length))
    }

    /// The record at `location` if every byte of it is in the page cache, else nil, without ever
    /// waiting for the disk: an event loop may call it and fall back to `read(at:)` elsewhere.
    public func readIfCached(at location: WALLocation) -> WALRecord? {
        guard let segment = shared.segments.withLock({ $0[id: location.segment] }) else { return nil }
        return segment.cachedRecord(at: Int64(location.offset), length: Int(location.length))
    }

    /// Stops accepting appends, writes and fsyncs what is queued, completes every caller, and
    /// stops the writer thread. Idempotent; returns once the writer has finished, except when
    /// called from a completion (on the writer thread itself), where it only asks it to stop.
    public func close() {
        stopWriter()
    }

    /// Starts a new writer thread on `active` after `stopWriter` (a reset or a truncation replaced
    /// the segments and the shared positions).
    func startWriter(activeFD: Int32, active: SegmentFile, lastLSN: UInt64) throws(WALError) {
        let writerState = WALWriter(
            shared: shared, configuration: configuration, logger: logger, activeFD: activeFD, active: active,
            lastLSN: lastLSN)
        let thread = try System.startThread(path: directory) { writerState.run() }
        writerThread.withLock { $0 = thread }
        writer.withLock { $0 = writerState }
    }

    /// Closes the queue and waits for the writer thread to finish what it holds.
    func stopWriter() {
        shared.queue.withLock { $0.closed = true }
        shared.wakeup.raise()
        let thread = writerThread.withLock { thread in
            defer { thread = nil }
            return thread
        }
        guard let thread else { return }
        if System.isCurrentThread(thread) {
            System.detachThread(thread)
        } else {
            System.joinThread(thread)
        }
    }
}
