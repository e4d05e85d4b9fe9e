internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeWAL
import NIOCore

/// `erdtree.v1.Hello`: a slave introducing itself.
struct Hello: Equatable {
    var replicationID: String
    var lastLSN: UInt64
    var slaveID: String
    var advertiseAddress: String
    var heartbeatIntervalMs: UInt32
    /// The slave's epochs after epoch 1.
    var epochs: [EpochStart]
}

/// `erdtree.v1.Welcome`: how the master will bring a slave up to date.
struct Welcome: Equatable {
    var replicationID: String
    var fullResync = false
    var snapshotLSN: UInt64 = 0
    var masterLSN: UInt64
    var epoch: UInt64
    /// Set when the slave's log holds records past `branchLSN` that are not in the master's history.
    var divergent = false
    var branchLSN: UInt64 = 0
}

/// `erdtree.v1.ReplicateRequest`: what a slave sends on `Replicate`.
enum ReplicateRequest: Equatable {
    case hello(Hello)
    case ack(appliedLSN: UInt64, durableLSN: UInt64)

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.ReplicateRequest",
            unpack: { erdtree__v1__replicate_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            switch message.pointee.kind_case {
            case ERDTREE__V1__REPLICATE_REQUEST__KIND_HELLO:
                let hello = message.pointee.hello.pointee
                var epochs: [EpochStart] = []
                for index in 0..<hello.n_epochs {
                    guard let start = hello.epochs[index]?.pointee else { continue }
                    epochs.append(EpochStart(epoch: start.epoch, firstLSN: start.first_lsn))
                }
                return .hello(
                    Hello(
                        replicationID: ProtobufCCodec.string(hello.replication_id), lastLSN: hello.last_lsn,
                        slaveID: ProtobufCCodec.string(hello.slave_id),
                        advertiseAddress: ProtobufCCodec.string(hello.advertise_address),
                        heartbeatIntervalMs: hello.heartbeat_interval_ms, epochs: epochs))
            case ERDTREE__V1__REPLICATE_REQUEST__KIND_ACK:
                let ack = message.pointee.ack.pointee
                return .ack(appliedLSN: ack.applied_lsn, durableLSN: ack.durable_lsn)
            default:
                throw RequestError.emptyOneof("ReplicateRequest", fields: "a hello or an ack").status
            }
        }
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__ReplicateRequest()
        erdtree__v1__replicate_request__init(&message)
        switch self {
        case .hello(let fields):
            let hello = arena.make(Erdtree__V1__Hello.self) { erdtree__v1__hello__init($0) }
            hello.pointee.replication_id = arena.cString(fields.replicationID)
            hello.pointee.last_lsn = fields.lastLSN
            hello.pointee.slave_id = arena.cString(fields.slaveID)
            hello.pointee.advertise_address = arena.cString(fields.advertiseAddress)
            hello.pointee.heartbeat_interval_ms = fields.heartbeatIntervalMs
            let epochs = arena.array(
                of: UnsafeMutablePointer<Erdtree__V1__EpochStart>?.self, count: fields.epochs.count)
            for (index, start) in fields.epochs.enumerated() {
                let item = arena.make(Erdtree__V1__EpochStart.self) { erdtree__v1__epoch_start__init($0) }
                item.pointee.epoch = start.epoch
                item.pointee.first_lsn = start.firstLSN
                epochs[index] = item
            }
            hello.pointee.n_epochs = fields.epochs.count
            hello.pointee.epochs = epochs
            message.kind_case = ERDTREE__V1__REPLICATE_REQUEST__KIND_HELLO
            message.hello = hello
        case .ack(let applied, let durable):
            let ack = arena.make(Erdtree__V1__Ack.self) { erdtree__v1__ack__init($0) }
            ack.pointee.applied_lsn = applied
            ack.pointee.durable_lsn = durable
            message.kind_case = ERDTREE__V1__REPLICATE_REQUEST__KIND_ACK
            message.ack = ack
        }
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `erdtree.v1.ReplicateResponse`: what a master sends on `Replicate`.
enum ReplicateResponse {
    case welcome(Welcome)
    case batch(entries: [WALRecord], masterLSN: UInt64)
    case snapshot(snapshotLSN: UInt64, entries: [WALRecord], last: Bool)
    case heartbeat(masterLSN: UInt64, timestampMs: Int64)
    case promote(lastLSN: UInt64)

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        return encode(allocator: allocator, reusing: &arena)
    }

    /// Encodes the message in `arena`, one kept across messages, and resets it afterwards.
    func encode(allocator: ByteBufferAllocator, reusing arena: inout CArena) -> ByteBuffer {
        defer { arena.reset() }
        var message = Erdtree__V1__ReplicateResponse()
        erdtree__v1__replicate_response__init(&message)
        switch self {
        case .welcome(let fields):
            let welcome = arena.make(Erdtree__V1__Welcome.self) { erdtree__v1__welcome__init($0) }
            welcome.pointee.replication_id = arena.cString(fields.replicationID)
            welcome.pointee.full_resync = fields.fullResync ? 1 : 0
            welcome.pointee.snapshot_lsn = fields.snapshotLSN
            welcome.pointee.master_lsn = fields.masterLSN
            welcome.pointee.epoch = fields.epoch
            welcome.pointee.divergent = fields.divergent ? 1 : 0
            welcome.pointee.branch_lsn = fields.branchLSN
            message.kind_case = ERDTREE__V1__REPLICATE_RESPONSE__KIND_WELCOME
            message.welcome = welcome
        case .batch(let entries, let masterLSN):
            let batch = arena.make(Erdtree__V1__Batch.self) { erdtree__v1__batch__init($0) }
            batch.pointee.n_entries = entries.count
            batch.pointee.entries = arena.entries(entries)
            batch.pointee.master_lsn = masterLSN
            message.kind_case = ERDTREE__V1__REPLICATE_RESPONSE__KIND_BATCH
            message.batch = batch
        case .snapshot(let snapshotLSN, let entries, let last):
            let chunk = arena.make(Erdtree__V1__SnapshotChunk.self) { erdtree__v1__snapshot_chunk__init($0) }
            chunk.pointee.snapshot_lsn = snapshotLSN
            chunk.pointee.n_entries = entries.count
            chunk.pointee.entries = arena.entries(entries)
            chunk.pointee.last = last ? 1 : 0
            message.kind_case = ERDTREE__V1__REPLICATE_RESPONSE__KIND_SNAPSHOT
            message.snapshot = chunk
        case .heartbeat(let masterLSN, let timestampMs):
            let heartbeat = arena.make(Erdtree__V1__Heartbeat.self) { erdtree__v1__heartbeat__init($0) }
            heartbeat.pointee.master_lsn = masterLSN
            heartbeat.pointee.timestamp_ms = timestampMs
            message.kind_case = ERDTREE__V1__REPLICATE_RESPONSE__KIND_HEARTBEAT
            message.heartbeat = heartbeat
        case .promote(let lastLSN):
            let promote = arena.make(Erdtree__V1__Promote.self) { erdtree__v1__promote__init($0) }
            promote.pointee.last_lsn = lastLSN
            message.kind_case = ERDTREE__V1__REPLICATE_RESPONSE__KIND_PROMOTE
            message.promote = promote
        }
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    /// Decodes a message in `arena`, one kept for the stream (see `ProtobufCCodec.withUnpacked`).
    init(decoding buffer: ByteBuffer, reusing arena: inout CArena) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.ReplicateResponse", reusing: &arena,
            unpack: { erdtree__v1__replicate_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            switch message.pointee.kind_case {
            case ERDTREE__V1__REPLICATE_RESPONSE__KIND_WELCOME:
                let welcome = message.pointee.welcome.pointee
                return .welcome(
                    Welcome(
                        replicationID: ProtobufCCodec.string(welcome.replication_id),
                        fullResync: welcome.full_resync != 0, snapshotLSN: welcome.snapshot_lsn,
                        masterLSN: welcome.master_lsn, epoch: max(welcome.epoch, 1), divergent: welcome.divergent != 0,
                        branchLSN: welcome.branch_lsn))
            case ERDTREE__V1__REPLICATE_RESPONSE__KIND_BATCH:
                let batch = message.pointee.batch.pointee
                return .batch(
                    entries: WALRecord.decode(batch.entries, count: batch.n_entries), masterLSN: batch.master_lsn)
            case ERDTREE__V1__REPLICATE_RESPONSE__KIND_SNAPSHOT:
                let chunk = message.pointee.snapshot.pointee
                return .snapshot(
                    snapshotLSN: chunk.snapshot_lsn, entries: WALRecord.decode(chunk.entries, count: chunk.n_entries),
                    last: chunk.last != 0)
            case ERDTREE__V1__REPLICATE_RESPONSE__KIND_HEARTBEAT:
                let heartbeat = message.pointee.heartbeat.pointee
                return .heartbeat(masterLSN: heartbeat.master_lsn, timestampMs: heartbeat.timestamp_ms)
            case ERDTREE__V1__REPLICATE_RESPONSE__KIND_PROMOTE:
                return .promote(lastLSN: message.pointee.promote.pointee.last_lsn)
            default:
                throw NodeError.unknownReplicateResponse(kind: message.pointee.kind_case.rawValue).status
            }
        }
    }
}

extension WALRecord {
    /// `erdtree.v1.Entry`s as records (an unknown op reads as a set, as proto3 enums do; an
    /// epoch marker carries its epoch in `Entry.epoch`).
    static func decode(
        _ list: UnsafeMutablePointer<UnsafeMutablePointer<Erdtree__V1__Entry>?>?, count: Int
    ) -> [WALRecord] {
        guard let list else { return [] }
        var records: [WALRecord] = []
        records.reserveCapacity(count)
        for index in 0..<count {
            guard let entry = list[index]?.pointee else { continue }
            if entry.op == ERDTREE__V1__OP__OP_EPOCH {
                records.append(.epochMarker(entry.epoch, lsn: entry.lsn, timestampMs: entry.timestamp_ms))
                continue
            }
            records.append(
                WALRecord(
                    lsn: entry.lsn, timestampMs: entry.timestamp_ms,
                    op: entry.op == ERDTREE__V1__OP__OP_DELETE ? .delete : .set, expiresAtMs: entry.expires_at_ms,
                    key: ProtobufCCodec.bytes(ofString: entry.key), value: ProtobufCCodec.bytes(of: entry.value)))
        }
        return records
    }
}

extension CArena {
    /// A protobuf-c `Entry*` array holding `entries`, allocated in the arena.
    mutating func entries(_ entries: [WALRecord]) -> UnsafeMutablePointer<UnsafeMutablePointer<Erdtree__V1__Entry>?> {
        let list = array(of: UnsafeMutablePointer<Erdtree__V1__Entry>?.self, count: entries.count)
        for (i, update) in entries.enumerated() {
            let entry = make(Erdtree__V1__Entry.self) { erdtree__v1__entry__init($0) }
            entry.pointee.lsn = update.lsn
            entry.pointee.timestamp_ms = update.timestampMs
            entry.pointee.expires_at_ms = update.expiresAtMs
            if let epoch = update.markedEpoch {
                entry.pointee.op = ERDTREE__V1__OP__OP_EPOCH
                entry.pointee.epoch = epoch
                list[i] = entry
                continue
            }
            entry.pointee.op = update.op == .delete ? ERDTREE__V1__OP__OP_DELETE : ERDTREE__V1__OP__OP_SET
            entry.pointee.key = cString(update.key)
            entry.pointee.value = ProtobufCBinaryData(len: update.value.count, data: copy(update.value))
            list[i] = entry
        }
        return list
    }
}
