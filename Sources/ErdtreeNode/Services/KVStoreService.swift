import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import NIOCore
import NIOPosix

/// `erdtree.v1.KVStore`: validates each request, decodes it, hands it to the engine, and encodes
/// the answer. What a read or a write does to the data is `KVEngine`'s.
///
/// Reads answer inline on the connection's event loop: a Get is a shard lock and a dictionary
/// lookup, with no hop to another thread; only a value evicted from memory whose record is not in
/// the page cache is read back on the blocking thread pool (`KVEngine.get`). A write is answered
/// once the engine logged and applied it (on disk first with `sync_interval: always`), and on a
/// master with `replication.min_acks` once enough slaves acked it. A node that is not the master
/// refuses writes, naming the master (`RoleManager.refusal`), and makes a Get with `min_lsn`
/// wait for that LSN; a master handing its role over holds them until it knows the outcome.
public final class KVStoreService: Sendable {
    public static let serviceName = "erdtree.v1.KVStore"
    /// `GetUpdatesRequest.limit = 0` means this many; larger limits are capped at `maxUpdates`.
    static let defaultUpdates = 1000
    static let maxUpdates = 10_000

    let engine: KVEngine
    let limits: NodeConfig.Limits

    /// What the node is now: whether writes get in, and what a refused one is told.
    let roles: RoleManager

    /// On a master with `replication.min_acks > 0`: where writes wait for slave acks.
    let acks: (hub: ReplicationHub, replication: NodeConfig.Replication)?

    /// Built by `ServerNode`, with its role manager, replication hub and `replication` settings.
    init(
        engine: KVEngine, limits: NodeConfig.Limits, roles: RoleManager, replicationHub: ReplicationHub,
        replication: NodeConfig.Replication
    ) {
        self.engine = engine
        self.limits = limits
        self.roles = roles
        if replication.minAcks > 0 {
            acks = (replicationHub, replication)
        } else {
            acks = nil
        }
    }

    /// Answers a Set or a Delete once the engine has logged and applied it.
    private struct WriteAnswer: WriteResponder {
        let service: KVStoreService
        let call: ServerCall
        let op: WALOp

        func written(_ result: Result<KVEngine.Written, NodeError>) {
            switch result {
            case .success(let written):
                let response =
                    op == .set
                    ? SetResponse(lsn: written.lsn, epoch: written.epoch).encode(allocator: call.allocator)
                    : DeleteResponse(deleted: written.deleted, lsn: written.lsn, epoch: written.epoch)
                        .encode(allocator: call.allocator)
                service.answerWrite(call, lsn: written.lsn, response)
            case .failure(let error):
                call.finish(error.status)
            }
        }
    }

    /// Hands `write` to the engine; one its gate keeps out is held or refused as the role says
    /// (`RoleManager.writeBlocked`), and a held one comes back here.
    private func submit(_ write: KVEngine.Write, call: ServerCall) {
        let op: WALOp
        switch write {
        case .set: op = .set
        case .delete: op = .delete
        }
        guard !engine.write(write, on: call.eventLoop, responder: WriteAnswer(service: self, call: call, op: op)) else {
            return
        }
        roles.writeBlocked(
            method: op == .set ? "Set" : "Delete",
            RoleManager.HeldWrite(
                eventLoop: call.eventLoop, retry: { [self] in submit(write, call: call) },
                refuse: { error in call.finish(error.status) }))
    }

    /// Answers a logged write with `response` on the call's event loop (the engine's completion
    /// runs there), after `replication.min_acks` slaves acked its LSN when that is set;
    /// UNAVAILABLE saying how many did when `ack_timeout` passes first. A write that logged
    /// nothing (LSN 0) has nothing for slaves to ack and is answered at once. `response` is
    /// consumed: handed on while uniquely referenced, the transport frames it without a copy.
    private func answerWrite(_ call: ServerCall, lsn: UInt64, _ response: consuming ByteBuffer) {
        // A master whose coordinator lease ran out while the write was logged does not
        // acknowledge it: another master may be taking writes by now.
        guard engine.writeGate.withinLease else { return call.finish(NodeError.leaseLapsed.status) }
        guard lsn > 0, let (hub, replication) = acks else {
            call.respond(response)
            return
        }
        let response = copy response
        hub.awaitAcks(lsn: lsn, count: replication.minAcks, timeout: replication.ackTimeout, on: call.eventLoop) {
            acked, enough in
            call.eventLoop.execute {
                if enough && self.engine.writeGate.withinLease {
                    call.respond(response)
                } else if enough {
                    call.finish(NodeError.leaseLapsed.status)
                } else {
                    call.finish(
                        NodeError.acksTimedOut(
                            lsn: lsn, acked: acked, required: replication.minAcks, timeout: replication.ackTimeout
                        ).status)
                }
            }
        }
    }

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

    /// Answers from the engine on the event loop, or, for a slave behind `min_lsn`, once the
    /// engine has applied it.
    func get(_ request: ByteBuffer, call: ServerCall) throws(RPCStatus) {
        let message = try GetRequest(decoding: request)
        try validate(key: message.key)
        let key = StoreKey(message.key)
        let applied = engine.appliedLSN
        guard message.minLSN > applied else { return read(key, call: call) }
        // A slave may be about to apply it: wait (within the call's deadline, at most
        // `minLSNWait`); a master has every LSN it ever logged, so it refuses at once.
        guard !roles.isMaster else {
            throw NodeError.minLSNAhead(minLSN: message.minLSN, appliedLSN: applied).status
        }
        engine.waitForApplied(
            message.minLSN, until: .now() + TimeAmount(Self.minLSNWait), callDeadline: call.deadline, on: call.eventLoop
        ) { [self] result in
            switch result {
            case .success: read(key, call: call)
            case .failure(let error): call.finish(error.status)
            }
        }
    }

    /// The longest a Get with `min_lsn` waits on a slave for that LSN to be applied.
    static let minLSNWait = Duration.seconds(5)

    private func read(_ key: StoreKey, call: ServerCall) {
        switch engine.get(key) {
        case .found(let found):
            call.respond(Self.response(found, allocator: call.allocator))
        case .missing:
            call.respond(Self.response(nil, allocator: call.allocator))
        case .onDisk(let evicted):
            engine.readFromDisk(evicted) { result in
                switch result {
                case .success(let found): call.respond(Self.response(found, allocator: call.allocator))
                case .failure(let error): call.finish(error.status)
                }
            }
        }
    }

    private static func response(_ found: KVEngine.Found?, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard let found else {
            return GetResponse(value: [], found: false, lsn: 0, expiresAtMs: 0).encode(allocator: allocator)
        }
        return GetResponse(value: found.value, found: true, lsn: found.lsn, expiresAtMs: found.expiresAtMs)
            .encode(allocator: allocator)
    }

    /// Validates, then has the engine log and apply; answered on the call's event loop.
    func set(_ request: ByteBuffer, call: ServerCall) throws(RPCStatus) {
        try refuseOnSlave("Set")
        let message = try SetRequest(decoding: request)
        try validate(key: message.key)
        if message.value.count > limits.maxValueBytes {
            throw RequestError.valueTooLarge(limit: limits.maxValueBytes, actual: message.value.count).status
        }
        let expiresAtMs = try expiry(ttlMs: message.ttlMs)
        submit(.set(key: message.key, value: message.value, expiresAtMs: expiresAtMs), call: call)
    }

    /// Validates, then has the engine log and apply; a missing key is answered at once.
    func delete(_ request: ByteBuffer, call: ServerCall) throws(RPCStatus) {
        try refuseOnSlave("Delete")
        let message = try DeleteRequest(decoding: request)
        try validate(key: message.key)
        submit(.delete(key: message.key), call: call)
    }

    /// Logged writes after `since_lsn`, read from the WAL's segments. Blocking: call it off
    /// the event loop.
    func updates(_ request: GetUpdatesRequest, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        let wanted = request.limit == 0 ? Self.defaultUpdates : min(Int(request.limit), Self.maxUpdates)
        let found: WALEntries
        do {
            found = try engine.entries(since: request.sinceLSN, limit: wanted)
        } catch {
            throw NodeError.logUnreadable(error).status
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

    /// Refuses a write before decoding it on a node that is no master (the engine's gate catches
    /// the rest, e.g. a role change while the request was read).
    private func refuseOnSlave(_ method: String) throws(RPCStatus) {
        guard !engine.writeGate.isOpen, let refusal = roles.refusal(for: method) else { return }
        throw refusal.status
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
        // Most keys are ASCII: eight bytes at a time with no high bit set are valid as they are
        // (the decoder below costs ~15 instructions a byte).
        let ascii = bytes.withUnsafeBytes { raw -> Bool in
            var index = 0
            while index + 8 <= raw.count {
                if raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 != 0 {
                    return false
                }
                index += 8
            }
            while index < raw.count {
                if raw[index] & 0x80 != 0 { return false }
                index += 1
            }
            return true
        }
        if ascii { return true }
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
