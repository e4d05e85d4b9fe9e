import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import NIOCore
import NIOPosix
import Synchronization

/// `erdtree.v1.KVStore` on a master: validates requests, logs writes to the WAL, applies
/// them to the in-memory store, and answers.
///
/// Reads answer inline on the connection's event loop: a Get is a shard lock and a
/// dictionary lookup, with no hop to another thread. A Get of a key whose value was
/// evicted (`storage.max_entries`) reads that key's record back with one positioned read
/// at the location its index entry holds, answers with it and puts it back in memory:
/// inline when the record is in the page cache (a read that cannot wait), else on the
/// blocking thread pool.
///
/// A write is answered only after the WAL writer has its record in the kernel (and on
/// disk, with `sync_interval: always`); the writer's completion applies it to the store
/// (so the store holds every write the log has completed, which compaction relies on) and
/// the connection's event loop answers it.
public final class KVStoreService: Sendable {
    public static let serviceName = "erdtree.v1.KVStore"
    /// `GetUpdatesRequest.limit = 0` means this many; larger limits are capped at `maxUpdates`.
    static let defaultUpdates = 1000
    static let maxUpdates = 10_000

    let store: KeyValueStore
    let wal: WriteAheadLog
    let limits: NodeConfig.Limits
    /// Gets answered by reading an evicted value back from disk, for status.
    let diskReads = Atomic<UInt64>(0)

    /// On a slave, the master's `host:port`: writes are refused and pointed there.
    let masterAddress: String?

    /// On a master with `replication.min_acks > 0`: where writes wait for slave acks.
    let acks: (hub: ReplicationHub, replication: NodeConfig.Replication)?
    /// Whether writes are committed by the event loop that received them (`WriteAheadLog.callersCommit`).
    let callersCommit: Bool

    public init(
        store: KeyValueStore, wal: WriteAheadLog, limits: NodeConfig.Limits, masterAddress: String? = nil,
        replicationHub: ReplicationHub? = nil, replication: NodeConfig.Replication? = nil
    ) {
        self.store = store
        self.wal = wal
        self.limits = limits
        self.masterAddress = masterAddress
        self.callersCommit = wal.callersCommit
        if let replicationHub, let replication, replication.minAcks > 0 {
            acks = (replicationHub, replication)
        } else {
            acks = nil
        }
    }

    /// Answers a logged write with `response`, after `replication.min_acks` slaves acked its LSN
    /// when that is set; UNAVAILABLE saying how many did when `ack_timeout` passes first.
    private func answerWrite(_ call: ServerCall, lsn: UInt64, _ response: @escaping @Sendable () -> ByteBuffer) {
        guard let (hub, replication) = acks else {
            if call.eventLoop.inEventLoop {
                call.respond(response())
            } else {
                call.eventLoop.execute { call.respond(response()) }
            }
            return
        }
        hub.awaitAcks(lsn: lsn, count: replication.minAcks, timeout: replication.ackTimeout, on: call.eventLoop) {
            acked, enough in
            call.eventLoop.execute {
                if enough {
                    call.respond(response())
                } else {
                    call.finish(
                        RPCStatus(
                            .unavailable,
                            "the write is logged and applied on the master at LSN \(lsn), but only \(acked) of the "
                                + "\(replication.minAcks) slave acks replication.min_acks asks for arrived within "
                                + "replication.ack_timeout (\(replication.ackTimeout))"))
                }
            }
        }
    }

    /// The last LSN in the log; every write up to it has been applied or is being answered.
    public var currentLSN: UInt64 { wal.lastLSN }

    public func register(in router: inout RPCRouter) {
        router.register(
            "/erdtree.v1.KVStore/Get",
            .unary { [self] request, call in
                do throws(RPCStatus) { try get(request, call: call) } catch { call.finish(error) }
            })
        router.register(
            "/erdtree.v1.KVStore/Set",
            .unary { [self] request, call in
                do throws(RPCStatus) { try set(request, call: call) } catch { call.finish(error) }
            })
        router.register(
            "/erdtree.v1.KVStore/Delete",
            .unary { [self] request, call in
                do throws(RPCStatus) { try delete(request, call: call) } catch { call.finish(error) }
            })
        router.register(
            "/erdtree.v1.KVStore/GetUpdates",
            .unary { [self] request, call in
                let message: GetUpdatesRequest
                do throws(RPCStatus) {
                    message = try GetUpdatesRequest(decoding: request)
                } catch {
                    call.finish(error)
                    return
                }
                // Reading segments is file I/O: keep it off the event loop.
                NIOThreadPool.singleton.submit { [self] _ in
                    answer(call) { () throws(RPCStatus) in try updates(message, allocator: call.allocator) }
                }
            })
    }

    /// Answers from memory on the event loop, or for an evicted value from the WAL on the
    /// blocking thread pool.
    func get(_ request: ByteBuffer, call: ServerCall) throws(RPCStatus) {
        let message = try GetRequest(decoding: request)
        try validate(key: message.key)
        if message.minLSN > appliedLSN {
            // A slave may be about to apply it: wait (within the call's deadline, at most
            // `minLSNWait`); a master has every LSN it ever logged, so it refuses at once.
            guard masterAddress != nil else { throw Self.behind(message.minLSN, applied: appliedLSN) }
            let limit = NIODeadline.now() + TimeAmount(Self.minLSNWait)
            awaitApplied(message.minLSN, until: limit, call: call) { [self] in
                do throws(RPCStatus) { try read(message.key, call: call) } catch { call.finish(error) }
            }
            return
        }
        try read(message.key, call: call)
    }

    /// The longest a Get with `min_lsn` waits on a slave for that LSN to be applied.
    static let minLSNWait = Duration.seconds(5)

    /// The last LSN whose write is visible to reads (its WAL completion applied it).
    var appliedLSN: UInt64 { wal.completedLSN }

    private static func behind(_ minLSN: UInt64, applied: UInt64) -> RPCStatus {
        RPCStatus(.unavailable, "min_lsn \(minLSN) is ahead of this node, which has applied up to LSN \(applied)")
    }

    /// Runs `then` on the call's event loop once `lsn` is applied; UNAVAILABLE at `limit`. When
    /// the caller's own deadline comes first, the call ends with DEADLINE_EXCEEDED (the
    /// transport's deadline and this wait used to race to answer it, UNAVAILABLE or not).
    private func awaitApplied(
        _ lsn: UInt64, until limit: NIODeadline, call: ServerCall, then: @escaping () -> Void
    ) {
        if appliedLSN >= lsn { return then() }
        let now = NIODeadline.now()
        if let deadline = call.deadline, deadline <= limit, now >= deadline {
            return call.finish(RPCStatus(.deadlineExceeded, "deadline passed waiting for min_lsn \(lsn)"))
        }
        if now >= limit { return call.finish(Self.behind(lsn, applied: appliedLSN)) }
        // Polling every millisecond costs little next to replication's own latency and needs no
        // waiter list on the apply path.
        call.eventLoop.scheduleTask(in: .milliseconds(1)) { [self] in
            awaitApplied(lsn, until: limit, call: call, then: then)
        }
    }

    private func read(_ keyBytes: [UInt8], call: ServerCall) throws(RPCStatus) {
        let key = StoreKey(keyBytes)
        guard let stored = store.get(key, nowMs: WallClock.nowMs()) else {
            call.respond(GetResponse(value: [], found: false, lsn: 0, expiresAtMs: 0).encode(allocator: call.allocator))
            return
        }
        if let value = stored.value {
            call.respond(
                GetResponse(value: value, found: true, lsn: stored.lsn, expiresAtMs: stored.expiresAtMs)
                    .encode(allocator: call.allocator))
            return
        }
        // A record in the page cache is read right here: RWF_NOWAIT never waits for the disk.
        if let record = wal.readIfCached(at: WALLocation(stored.location)),
            Self.isWrite(record, of: key, at: stored.lsn)
        {
            readBack(record, of: key)
            call.respond(
                GetResponse(
                    value: ValueBytes(record.value), found: true, lsn: stored.lsn, expiresAtMs: stored.expiresAtMs
                )
                .encode(allocator: call.allocator))
            return
        }
        // Otherwise the read may wait for the disk: keep it off the event loop.
        NIOThreadPool.singleton.submit { [self] _ in
            answer(call) { () throws(RPCStatus) in
                guard let (value, current) = try readEvicted(key, stored) else {
                    return GetResponse(value: [], found: false, lsn: 0, expiresAtMs: 0).encode(
                        allocator: call.allocator)
                }
                return GetResponse(value: value, found: true, lsn: current.lsn, expiresAtMs: current.expiresAtMs)
                    .encode(allocator: call.allocator)
            }
        }
    }

    /// Reads an evicted value back with one positioned read at its record's location and puts
    /// it back in memory. Blocking: call it off the event loop.
    ///
    /// A compaction that finished since `stored` was looked up has moved the record (its old
    /// segment is gone); the key is then looked up again, which also catches a rewrite or delete
    /// in between.
    ///
    /// - Returns: the value and the entry it belongs to, or nil if the key is gone by now.
    /// - Throws: INTERNAL when the bytes there are not this key's write at its LSN (the index and
    ///   the log disagree), UNAVAILABLE when the log cannot be read.
    func readEvicted(_ key: StoreKey, _ stored: StoredValue) throws(RPCStatus) -> (ValueBytes, StoredValue)? {
        var current = stored
        // Each retry follows one finished compaction; three in a row means something is wrong.
        for _ in 0..<3 {
            let record: WALRecord
            switch Result(catching: { () throws(WALError) in try wal.read(at: WALLocation(current.location)) }) {
            case .success(let read):
                record = read
            case .failure(.segmentGone):
                guard let again = store.get(key, nowMs: WallClock.nowMs()) else { return nil }
                if let value = again.value { return (value, again) }
                current = again
                continue
            case .failure(let error):
                // Bytes that are not the promised record mean the index and the log disagree;
                // anything else is the disk failing, which may pass.
                let code: RPCStatus.Code = if case .corruptRecord = error { .internal } else { .unavailable }
                throw RPCStatus(code, "cannot read the value of key \(key) back from the write-ahead log: \(error)")
            }
            guard Self.isWrite(record, of: key, at: current.lsn) else {
                throw RPCStatus(
                    .internal,
                    "the value of key \(key) was evicted from memory at LSN \(current.lsn), but the write-ahead "
                        + "log's record at its location is a \(record.op) of key \(StoreKey(record.key)) at LSN "
                        + "\(record.lsn)")
            }
            readBack(record, of: key)
            return (ValueBytes(record.value), current)
        }
        throw RPCStatus(
            .unavailable, "the record of key \(key) moved three times while being read (compaction); try again")
    }

    /// Whether `record` is the set of `key` at `lsn`, i.e. what the index entry promised.
    private static func isWrite(_ record: WALRecord, of key: StoreKey, at lsn: UInt64) -> Bool {
        record.lsn == lsn && record.op == .set && record.key == key.bytes
    }

    /// Counts a value read back from disk and makes it resident again.
    private func readBack(_ record: WALRecord, of key: StoreKey) {
        diskReads.add(1, ordering: .relaxed)
        store.restore(key, value: record.value, lsn: record.lsn)
    }

    /// Validates, logs, then applies and answers on the call's event loop.
    func set(_ request: ByteBuffer, call: ServerCall) throws(RPCStatus) {
        try refuseOnSlave("Set")
        let message = try SetRequest(decoding: request)
        try validate(key: message.key)
        if message.value.count > limits.maxValueBytes {
            throw RequestError.valueTooLarge(limit: limits.maxValueBytes, actual: message.value.count).status
        }
        let expiresAtMs = try expiry(ttlMs: message.ttlMs)
        let store = self.store
        let key = StoreKey(message.key)
        // Under noeviction a new key past storage.max_entries is refused before it is logged.
        do {
            try store.admit(key, nowMs: WallClock.nowMs())
        } catch {
            throw RPCStatus(.resourceExhausted, error.description)
        }
        let claimed = wal.append(
            op: .set, key: message.key, value: message.value, expiresAtMs: expiresAtMs,
            timestampMs: WallClock.nowMs(), byCaller: callersCommit
        ) { result in
            switch result {
            case .success(let appended):
                // Applied here, on the writer thread, so that compaction (which only looks at
                // records whose completion has returned) sees every logged write in the store.
                store.set(
                    key, value: message.value, lsn: appended.lsn, expiresAtMs: expiresAtMs,
                    location: DiskLocation(appended.location))
                self.answerWrite(call, lsn: appended.lsn) {
                    SetResponse(lsn: appended.lsn).encode(allocator: call.allocator)
                }
            case .failure(let error):
                call.finish(Self.notLogged(error))
            }
        }
        if claimed { commitAtEndOfTurn(call) }
    }

    /// Under an interval sync policy the event loop writes its turn's writes itself, once all
    /// the requests it read in this turn are queued: one group commit per turn.
    private func commitAtEndOfTurn(_ call: ServerCall) {
        let wal = self.wal
        call.eventLoop.execute { wal.commitQueued() }
    }

    func delete(_ request: ByteBuffer, call: ServerCall) throws(RPCStatus) {
        try refuseOnSlave("Delete")
        let message = try DeleteRequest(decoding: request)
        try validate(key: message.key)
        let key = StoreKey(message.key)
        // Deleting a missing key writes nothing, so it takes no LSN (the proto's contract).
        guard store.get(key, nowMs: WallClock.nowMs()) != nil else {
            call.respond(DeleteResponse(deleted: false, lsn: 0).encode(allocator: call.allocator))
            return
        }
        let store = self.store
        let claimed = wal.append(
            op: .delete, key: message.key, value: [], expiresAtMs: 0, timestampMs: WallClock.nowMs(),
            byCaller: callersCommit
        ) { result in
            switch result {
            case .success(let appended):
                let deleted = store.delete(key, lsn: appended.lsn, nowMs: WallClock.nowMs())
                self.answerWrite(call, lsn: appended.lsn) {
                    DeleteResponse(deleted: deleted, lsn: appended.lsn).encode(allocator: call.allocator)
                }
            case .failure(let error):
                call.finish(Self.notLogged(error))
            }
        }
        if claimed { commitAtEndOfTurn(call) }
    }

    /// Logged writes after `since_lsn`, read from the WAL's segments. Blocking: call it off
    /// the event loop.
    func updates(_ request: GetUpdatesRequest, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        let wanted = request.limit == 0 ? Self.defaultUpdates : min(Int(request.limit), Self.maxUpdates)
        let found: WALEntries
        do {
            found = try wal.entries(since: request.sinceLSN, limit: wanted)
        } catch {
            throw RPCStatus(.unavailable, "cannot read the write-ahead log: \(error)")
        }
        // A caller ahead of this node (it followed another history) or behind what the log
        // still holds cannot catch up entry by entry: it must start over from a full copy.
        if found.resyncRequired || request.sinceLSN > found.lastLSN {
            return GetUpdatesResponse(entries: [], masterLSN: found.lastLSN, resyncRequired: true)
                .encode(allocator: allocator)
        }
        // Stay under the message limit: a client asking for many 1 MiB values gets fewer
        // entries and asks again from the last LSN it saw.
        var budget = limits.maxMessageBytes - 1024
        var count = 0
        for record in found.records {
            budget -= record.key.count + record.value.count + 64
            if budget < 0 && count > 0 { break }
            count += 1
        }
        let entries = Array(found.records.prefix(count))
        return GetUpdatesResponse(entries: entries, masterLSN: found.lastLSN, resyncRequired: found.resyncRequired)
            .encode(allocator: allocator)
    }

    private func refuseOnSlave(_ method: String) throws(RPCStatus) {
        guard let masterAddress else { return }
        throw RPCStatus(
            .failedPrecondition,
            "this node is a slave and takes no writes; send \(method) to the master at \(masterAddress)")
    }

    static func notLogged(_ error: WALError) -> RPCStatus {
        RPCStatus(.unavailable, "the write was not logged, so it was not applied: \(error)")
    }

    private func validate(key: [UInt8]) throws(RPCStatus) {
        if key.isEmpty { throw RequestError.emptyKey(limit: limits.maxKeyBytes).status }
        if key.count > limits.maxKeyBytes {
            throw RequestError.keyTooLong(limit: limits.maxKeyBytes, actual: key.count).status
        }
        if !Self.isValidUTF8(key) { throw RequestError.keyNotUTF8.status }
    }

    private func expiry(ttlMs: Int64) throws(RPCStatus) -> Int64 {
        if ttlMs < 0 { throw RequestError.negativeTTL(ttlMs).status }
        if ttlMs == 0 { return 0 }
        // 253402300800000 ms is 10000-01-01T00:00:00Z.
        let (expires, overflow) = WallClock.nowMs().addingReportingOverflow(ttlMs)
        if overflow || expires >= 253_402_300_800_000 { throw RequestError.ttlTooLarge(ttlMs).status }
        return expires
    }

    /// Validates without allocating: the stdlib's UTF-8 decoder over the bytes.
    static func isValidUTF8(_ bytes: [UInt8]) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}

/// Runs a handler body and answers the call with its result or its error status.
func answer(_ call: ServerCall, _ body: () throws(RPCStatus) -> ByteBuffer) {
    do {
        call.respond(try body())
    } catch {
        call.finish(error)
    }
}
