internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import NIOCore

// Admin's role changes: Failover, Promote and Follow, both ways (the node decodes requests and
// encodes responses; the CLI the other way round).

/// `erdtree.v1.FailoverRequest`.
struct FailoverRequest: Equatable {
    /// A slave's id or address; empty: the most up-to-date one.
    var to: String
    /// 0: the default.
    var timeoutMs: UInt32

    init(to: String, timeoutMs: UInt32) {
        self.to = to
        self.timeoutMs = timeoutMs
    }

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.FailoverRequest",
            unpack: { erdtree__v1__failover_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            FailoverRequest(to: ProtobufCCodec.string(message.pointee.to), timeoutMs: message.pointee.timeout_ms)
        }
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__FailoverRequest()
        erdtree__v1__failover_request__init(&message)
        message.to = arena.cString(to)
        message.timeout_ms = timeoutMs
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `erdtree.v1.FailoverResponse`.
public struct FailoverResponse: Sendable, Equatable {
    public var masterAddress: String
    public var epoch: UInt64
    public var lastLSN: UInt64

    init(masterAddress: String, epoch: UInt64, lastLSN: UInt64) {
        self.masterAddress = masterAddress
        self.epoch = epoch
        self.lastLSN = lastLSN
    }

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.FailoverResponse",
            unpack: { erdtree__v1__failover_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            FailoverResponse(
                masterAddress: ProtobufCCodec.string(message.pointee.master_address), epoch: message.pointee.epoch,
                lastLSN: message.pointee.last_lsn)
        }
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__FailoverResponse()
        erdtree__v1__failover_response__init(&message)
        message.master_address = arena.cString(masterAddress)
        message.epoch = epoch
        message.last_lsn = lastLSN
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `erdtree.v1.PromoteRequest` (no fields) and `PromoteResponse`, which is an `EpochStart`.
enum PromoteMessages {
    static func decodeRequest(_ buffer: ByteBuffer) throws(RPCStatus) {
        try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.PromoteRequest", unpack: { erdtree__v1__promote_request__unpack($0, $1, $2) }
        ) { _ throws(RPCStatus) in }
    }

    static func encodeRequest(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__PromoteRequest()
        erdtree__v1__promote_request__init(&message)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    static func encodeResponse(_ start: EpochStart, allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__PromoteResponse()
        erdtree__v1__promote_response__init(&message)
        message.epoch = start.epoch
        message.first_lsn = start.firstLSN
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    static func decodeResponse(_ buffer: ByteBuffer) throws(RPCStatus) -> EpochStart {
        try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.PromoteResponse",
            unpack: { erdtree__v1__promote_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in EpochStart(epoch: message.pointee.epoch, firstLSN: message.pointee.first_lsn) }
    }
}

/// `erdtree.v1.FollowRequest` and its empty `FollowResponse`.
enum FollowMessages {
    static func decodeRequest(_ buffer: ByteBuffer) throws(RPCStatus) -> String {
        try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.FollowRequest", unpack: { erdtree__v1__follow_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in ProtobufCCodec.string(message.pointee.master_address) }
    }

    static func encodeRequest(masterAddress: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Erdtree__V1__FollowRequest()
        erdtree__v1__follow_request__init(&message)
        message.master_address = arena.cString(masterAddress)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    static func encodeResponse(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__FollowResponse()
        erdtree__v1__follow_response__init(&message)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

extension SlaveListing {
    /// A `SlaveInfo` as a client reads it.
    init(_ info: Erdtree__V1__SlaveInfo) {
        self.init(
            slaveID: ProtobufCCodec.string(info.slave_id), address: ProtobufCCodec.string(info.address),
            appliedLSN: info.applied_lsn, durableLSN: info.durable_lsn, lagEntries: info.lag_entries,
            lagMs: info.lag_ms, connectedSinceMs: info.connected_since_ms,
            connected: info.state != ERDTREE__V1__SLAVE_STATE__SLAVE_STATE_DISCONNECTED)
    }
}

extension ListSlavesResponse {
    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.ListSlavesResponse",
            unpack: { erdtree__v1__list_slaves_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            var slaves: [SlaveListing] = []
            for index in 0..<message.pointee.n_slaves {
                if let info = message.pointee.slaves[index]?.pointee { slaves.append(SlaveListing(info)) }
            }
            return ListSlavesResponse(slaves: slaves)
        }
    }

    static func encodeRequest(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__ListSlavesRequest()
        erdtree__v1__list_slaves_request__init(&message)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}
