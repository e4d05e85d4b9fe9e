internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import NIOCore

// The etcd messages the client sends and reads (api/etcd), to and from the generated protobuf-c
// structs through ErdtreeProtobuf's codec: the KV service's Range and Put, and what they share.
// Txn, Lease and Watch are in the EtcdMessages+… files beside this one.

/// The etcd methods the client calls, as `Service/Method` (how errors name them).
enum EtcdMethod: String, Sendable {
    case range = "KV/Range"
    case put = "KV/Put"
    case txn = "KV/Txn"
    case leaseGrant = "Lease/LeaseGrant"
    case leaseRevoke = "Lease/LeaseRevoke"
    case leaseKeepAlive = "Lease/LeaseKeepAlive"
    case watch = "Watch/Watch"

    /// The gRPC path, e.g. `/etcdserverpb.KV/Range`.
    var path: String { "/etcdserverpb.\(rawValue)" }
}

/// Decodes an etcd answer: a buffer that is not a valid encoding is `.badResponse` naming the
/// message, as is anything `body` finds missing; never a crash.
func decodeEtcd<Message, Allocator, Value>(
    _ buffer: ByteBuffer, typeName: StaticString,
    unpack: (UnsafeMutablePointer<Allocator>, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
    _ body: (Message) throws(EtcdError) -> Value
) throws(EtcdError) -> Value {
    let decoded: Result<Value, EtcdError>
    do {
        decoded = try ProtobufCCodec.withUnpacked(buffer, typeName: typeName, unpack: unpack) { message in
            Result { () throws(EtcdError) in try body(message.pointee) }
        }
    } catch {
        throw .badResponse(error.message)
    }
    return try decoded.get()
}

extension EtcdKeyValue {
    /// Copies a decoded `mvccpb.KeyValue`.
    init(_ kv: Mvccpb__KeyValue) {
        self.init(
            key: ProtobufCCodec.bytes(of: kv.key), value: ProtobufCCodec.bytes(of: kv.value),
            createRevision: kv.create_revision, modRevision: kv.mod_revision, version: kv.version, lease: kv.lease)
    }

    /// Copies a decoded `repeated mvccpb.KeyValue`.
    static func list(_ items: UnsafeMutablePointer<UnsafeMutablePointer<Mvccpb__KeyValue>?>?, count: Int)
        -> [EtcdKeyValue]
    {
        guard let items else { return [] }
        return (0..<count).compactMap { index in items[index].map { EtcdKeyValue($0.pointee) } }
    }
}

/// The `range_end` that makes `[prefix, range_end)` every key starting with `prefix`: the prefix
/// with its last byte below 0xff incremented and what follows dropped, or `[0]` ("every key from
/// `key` on") when there is no such byte, as etcd's clientv3.GetPrefixRangeEnd does.
func etcdPrefixEnd(_ prefix: [UInt8]) -> [UInt8] {
    guard let last = prefix.lastIndex(where: { $0 < 0xff }) else { return [0] }
    var end = Array(prefix[...last])
    end[last] += 1
    return end
}

/// `etcdserverpb.RangeRequest`: one key (`rangeEnd` empty) or the keys in `[key, rangeEnd)`,
/// linearizable.
struct EtcdRangeRequest {
    var key: [UInt8]
    var rangeEnd: [UInt8] = []

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Etcdserverpb__RangeRequest()
        etcdserverpb__range_request__init(&message)
        fill(&message, in: &arena)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    /// Fills `message` with pointers into `arena`.
    func fill(_ message: inout Etcdserverpb__RangeRequest, in arena: inout CArena) {
        message.key = arena.binaryData(key)
        message.range_end = arena.binaryData(rangeEnd)
    }
}

/// `etcdserverpb.RangeResponse`: the keys found.
struct EtcdRangeResponse {
    var kvs: [EtcdKeyValue]

    init(_ message: Etcdserverpb__RangeResponse) {
        kvs = EtcdKeyValue.list(message.kvs, count: message.n_kvs)
    }

    init(decoding buffer: ByteBuffer) throws(EtcdError) {
        self = try decodeEtcd(
            buffer, typeName: "etcdserverpb.RangeResponse",
            unpack: { etcdserverpb__range_response__unpack($0, $1, $2) }
        ) { message throws(EtcdError) in EtcdRangeResponse(message) }
    }
}

/// `etcdserverpb.PutRequest`: `value` under `key`, attached to `lease` (0: none).
struct EtcdPutRequest {
    var key: [UInt8]
    var value: [UInt8]
    var lease: Int64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Etcdserverpb__PutRequest()
        etcdserverpb__put_request__init(&message)
        fill(&message, in: &arena)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }

    func fill(_ message: inout Etcdserverpb__PutRequest, in arena: inout CArena) {
        message.key = arena.binaryData(key)
        message.value = arena.binaryData(value)
        message.lease = lease
    }
}

/// `etcdserverpb.PutResponse`: nothing the client reads but that it decodes.
enum EtcdPutResponse {
    static func check(_ buffer: ByteBuffer) throws(EtcdError) {
        try decodeEtcd(
            buffer, typeName: "etcdserverpb.PutResponse", unpack: { etcdserverpb__put_response__unpack($0, $1, $2) }
        ) { _ throws(EtcdError) in }
    }
}

extension CArena {
    /// A protobuf-c `bytes` field holding a copy of `bytes` in the arena.
    mutating func binaryData(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        bytes.isEmpty
            ? ProtobufCBinaryData(len: 0, data: nil) : ProtobufCBinaryData(len: bytes.count, data: copy(bytes))
    }
}
