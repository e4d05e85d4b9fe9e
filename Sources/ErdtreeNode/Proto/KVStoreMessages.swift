internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeStorage
import ErdtreeWAL
import NIOCore

// Swift mirrors of the erdtree.v1 KVStore and Admin messages, and their translation to and
// from protobuf-c. Services see only these types, never a C struct.

struct GetRequest {
    var key: [UInt8]
    var minLSN: UInt64

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        (key, minLSN) = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.GetRequest", unpack: { erdtree__v1__get_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            (try requestKey(message.pointee.key, in: buffer), message.pointee.min_lsn)
        }
    }
}

struct GetResponse {
    var value: ValueBytes
    var found: Bool
    var lsn: UInt64
    var expiresAtMs: Int64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__GetResponse()
        erdtree__v1__get_response__init(&message)
        message.found = found ? 1 : 0
        message.lsn = lsn
        message.expires_at_ms = expiresAtMs
        return value.withUnsafeBytes { bytes in
            message.value = ProtobufCCodec.binaryData(viewing: bytes)
            return ProtobufCCodec.pack(&message, allocator: allocator)
        }
    }
}

struct SetRequest {
    var key: [UInt8]
    var value: [UInt8]
    var ttlMs: Int64

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        (key, value, ttlMs) = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.SetRequest", unpack: { erdtree__v1__set_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            (
                try requestKey(message.pointee.key, in: buffer),
                ProtobufCCodec.bytes(of: message.pointee.value),
                message.pointee.ttl_ms
            )
        }
    }
}

struct SetResponse {
    var lsn: UInt64
    var epoch: UInt64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__SetResponse()
        erdtree__v1__set_response__init(&message)
        message.lsn = lsn
        message.epoch = epoch
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

struct DeleteRequest {
    var key: [UInt8]

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        key = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.DeleteRequest", unpack: { erdtree__v1__delete_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            try requestKey(message.pointee.key, in: buffer)
        }
    }
}

struct DeleteResponse {
    var deleted: Bool
    var lsn: UInt64
    var epoch: UInt64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__DeleteResponse()
        erdtree__v1__delete_response__init(&message)
        message.deleted = deleted ? 1 : 0
        message.lsn = lsn
        message.epoch = epoch
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

struct GetUpdatesRequest {
    var sinceLSN: UInt64
    var limit: UInt32

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        (sinceLSN, limit) = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.GetUpdatesRequest",
            unpack: { erdtree__v1__get_updates_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            (message.pointee.since_lsn, message.pointee.limit)
        }
    }
}

struct GetUpdatesResponse {
    /// `erdtree.v1.Entry` is a WAL record on the wire, so the log's own type carries it.
    var entries: [WALRecord]
    var masterLSN: UInt64
    var resyncRequired: Bool

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__GetUpdatesResponse()
        erdtree__v1__get_updates_response__init(&message)
        let list = arena.entries(entries)
        message.n_entries = entries.count
        message.entries = list
        message.master_lsn = masterLSN
        message.resync_required = resyncRequired ? 1 : 0
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `erdtree.v1.StatusResponse`, flat on the wire, in `NodeStatus`'s parts here.
extension NodeStatus {
    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__StatusResponse()
        erdtree__v1__status_response__init(&message)
        message.role = identity.isMaster ? ERDTREE__V1__ROLE__ROLE_MASTER : ERDTREE__V1__ROLE__ROLE_SLAVE
        message.replication_id = arena.cString(identity.replicationID)
        message.master_address = arena.cString(identity.masterAddress)
        message.version = arena.cString(identity.version)
        message.uptime_ms = identity.uptimeMs
        message.last_lsn = positions.lastLSN
        message.applied_lsn = positions.appliedLSN
        message.durable_lsn = positions.durableLSN
        message.oldest_streamable_lsn = positions.oldestStreamableLSN
        message.keys = store.keys
        message.resident_values = store.residentValues
        message.memory_bytes = store.memoryBytes
        message.expired_reclaimed = store.expiredReclaimed
        message.disk_reads = store.diskReads
        message.segments = log.segments
        message.disk_bytes = log.diskBytes
        message.dead_bytes = log.deadBytes
        message.compactions = log.compactions
        message.last_compaction_ms = log.lastCompactionMs
        message.lag_entries = lag.entries
        message.lag_ms = lag.ms
        message.epoch = identity.epoch
        message.divergent_records = identity.divergentRecords
        message.fenced_reason = arena.cString(identity.fencedReason)
        message.connections_rejected = connections.rejected
        message.connections_closed_for_abuse = connections.closedForAbuse
        message.requests_refused_for_memory = connections.requestsRefusedForMemory
        message.buffered_request_bytes = connections.bufferedRequestBytes
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.StatusResponse",
            unpack: { erdtree__v1__status_response__unpack($0, $1, $2) }
        ) { m throws(RPCStatus) in
            let s = m.pointee
            var status = NodeStatus()
            status.identity = Identity(
                isMaster: s.role == ERDTREE__V1__ROLE__ROLE_MASTER,
                replicationID: ProtobufCCodec.string(s.replication_id),
                masterAddress: ProtobufCCodec.string(s.master_address), version: ProtobufCCodec.string(s.version),
                uptimeMs: s.uptime_ms, epoch: s.epoch, divergentRecords: s.divergent_records,
                fencedReason: ProtobufCCodec.string(s.fenced_reason))
            status.positions = Positions(
                lastLSN: s.last_lsn, appliedLSN: s.applied_lsn, durableLSN: s.durable_lsn,
                oldestStreamableLSN: s.oldest_streamable_lsn)
            status.store = Store(
                keys: s.keys, residentValues: s.resident_values, memoryBytes: s.memory_bytes,
                expiredReclaimed: s.expired_reclaimed, diskReads: s.disk_reads)
            status.log = Log(
                segments: s.segments, diskBytes: s.disk_bytes, deadBytes: s.dead_bytes, compactions: s.compactions,
                lastCompactionMs: s.last_compaction_ms)
            status.lag = Lag(entries: s.lag_entries, ms: s.lag_ms)
            status.connections = Connections(
                rejected: s.connections_rejected, closedForAbuse: s.connections_closed_for_abuse,
                requestsRefusedForMemory: s.requests_refused_for_memory,
                bufferedRequestBytes: s.buffered_request_bytes)
            return status
        }
    }
}

/// `erdtree.v1.SlaveInfo`: a master's view of one slave.
struct SlaveListing {
    var slaveID: String
    var address: String
    var appliedLSN: UInt64
    var durableLSN: UInt64
    var lagEntries: UInt64
    var lagMs: Int64
    var connectedSinceMs: Int64
    var connected: Bool

    func make(in arena: inout CArena) -> UnsafeMutablePointer<Erdtree__V1__SlaveInfo> {
        let info = arena.make(Erdtree__V1__SlaveInfo.self) { erdtree__v1__slave_info__init($0) }
        info.pointee.slave_id = arena.cString(slaveID)
        info.pointee.address = arena.cString(address)
        info.pointee.applied_lsn = appliedLSN
        info.pointee.durable_lsn = durableLSN
        info.pointee.lag_entries = lagEntries
        info.pointee.lag_ms = lagMs
        info.pointee.connected_since_ms = connectedSinceMs
        info.pointee.state =
            connected
            ? ERDTREE__V1__SLAVE_STATE__SLAVE_STATE_CONNECTED : ERDTREE__V1__SLAVE_STATE__SLAVE_STATE_DISCONNECTED
        return info
    }
}

struct ListSlavesResponse {
    var slaves: [SlaveListing] = []

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__ListSlavesResponse()
        erdtree__v1__list_slaves_response__init(&message)
        let list = arena.array(of: UnsafeMutablePointer<Erdtree__V1__SlaveInfo>?.self, count: slaves.count)
        for (index, slave) in slaves.enumerated() { list[index] = slave.make(in: &arena) }
        message.n_slaves = slaves.count
        message.slaves = list
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `erdtree.v1.AddSlaveRequest` in, `AddSlaveResponse` out.
struct AddSlave {
    var slaveID: String
    var address: String

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        (slaveID, address) = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.AddSlaveRequest",
            unpack: { erdtree__v1__add_slave_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            (ProtobufCCodec.string(message.pointee.slave_id), ProtobufCCodec.string(message.pointee.address))
        }
    }

    static func response(_ slave: SlaveListing, allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__AddSlaveResponse()
        erdtree__v1__add_slave_response__init(&message)
        message.slave = slave.make(in: &arena)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `erdtree.v1.RemoveSlaveRequest` in, `RemoveSlaveResponse` out.
struct RemoveSlave {
    var slaveID: String

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        slaveID = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.RemoveSlaveRequest",
            unpack: { erdtree__v1__remove_slave_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in ProtobufCCodec.string(message.pointee.slave_id) }
    }

    static func response(removed: Bool, allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__RemoveSlaveResponse()
        erdtree__v1__remove_slave_response__init(&message)
        message.removed = removed ? 1 : 0
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

func decodeStatusRequest(_ buffer: ByteBuffer) throws(RPCStatus) {
    try ProtobufCCodec.withUnpacked(
        buffer, typeName: "erdtree.v1.StatusRequest", unpack: { erdtree__v1__status_request__unpack($0, $1, $2) }
    ) { _ throws(RPCStatus) in }
}

func decodeListSlavesRequest(_ buffer: ByteBuffer) throws(RPCStatus) {
    try ProtobufCCodec.withUnpacked(
        buffer, typeName: "erdtree.v1.ListSlavesRequest",
        unpack: { erdtree__v1__list_slaves_request__unpack($0, $1, $2) }
    ) { _ throws(RPCStatus) in }
}

/// The `key` (field 1) of a KVStore request, refusing keys that hold a NUL byte.
///
/// protobuf-c hands strings over NUL-terminated, so "a\0b" would arrive as "a" and a write
/// would land on the wrong key. The wire length of field 1 tells the truth; when it differs
/// from the C string's length the key had a NUL in it. The request is a few dozen bytes and
/// already validated by protobuf-c, so the second pass is cheap and cannot fail to parse.
private func requestKey(_ key: UnsafeMutablePointer<CChar>?, in buffer: ByteBuffer) throws(RPCStatus) -> [UInt8] {
    let bytes = ProtobufCCodec.bytes(ofString: key)
    let wireLength = ProtobufCCodec.wireLength(ofField: 1, in: buffer)
    if let wireLength, wireLength != bytes.count {
        throw RequestError.keyContainsNUL.status
    }
    return bytes
}
