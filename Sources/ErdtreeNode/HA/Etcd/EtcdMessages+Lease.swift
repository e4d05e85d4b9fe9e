internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import NIOCore

// The Lease service's messages: grant, revoke and keep-alive (see EtcdMessages.swift).

/// `etcdserverpb.LeaseGrantRequest`: a lease of `ttlSeconds`, its ID chosen by etcd.
struct EtcdLeaseGrantRequest {
    var ttlSeconds: Int64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Etcdserverpb__LeaseGrantRequest()
        etcdserverpb__lease_grant_request__init(&message)
        message.ttl = ttlSeconds
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `etcdserverpb.LeaseGrantResponse`: the lease's ID and the TTL etcd granted.
struct EtcdLeaseGrantResponse {
    var id: Int64
    var ttlSeconds: Int64
}

extension EtcdLeaseGrantResponse {
    /// - Throws: `.badResponse` when undecodable, or when etcd names an error or no lease.
    init(decoding buffer: ByteBuffer) throws(EtcdError) {
        self = try decodeEtcd(
            buffer, typeName: "etcdserverpb.LeaseGrantResponse",
            unpack: { etcdserverpb__lease_grant_response__unpack($0, $1, $2) }
        ) { message throws(EtcdError) in
            let error = ProtobufCCodec.string(message.error)
            guard error.isEmpty else { throw .badResponse("etcd granted no lease: \(error)") }
            guard message.id != 0 else { throw .badResponse("etcd granted a lease without an ID") }
            return EtcdLeaseGrantResponse(id: message.id, ttlSeconds: message.ttl)
        }
    }
}

/// `etcdserverpb.LeaseRevokeRequest`.
struct EtcdLeaseRevokeRequest {
    var id: Int64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Etcdserverpb__LeaseRevokeRequest()
        etcdserverpb__lease_revoke_request__init(&message)
        message.id = id
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `etcdserverpb.LeaseRevokeResponse`: nothing the client reads but that it decodes.
enum EtcdLeaseRevokeResponse {
    static func check(_ buffer: ByteBuffer) throws(EtcdError) {
        try decodeEtcd(
            buffer, typeName: "etcdserverpb.LeaseRevokeResponse",
            unpack: { etcdserverpb__lease_revoke_response__unpack($0, $1, $2) }
        ) { _ throws(EtcdError) in }
    }
}

/// `etcdserverpb.LeaseKeepAliveRequest`: one renewal of lease `id`.
struct EtcdLeaseKeepAliveRequest {
    var id: Int64

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Etcdserverpb__LeaseKeepAliveRequest()
        etcdserverpb__lease_keep_alive_request__init(&message)
        message.id = id
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `etcdserverpb.LeaseKeepAliveResponse`: the lease renewed and its TTL from now; a TTL of 0 or
/// less says etcd does not have the lease.
struct EtcdLeaseKeepAliveResponse {
    var id: Int64
    var ttlSeconds: Int64
}

extension EtcdLeaseKeepAliveResponse {
    init(decoding buffer: ByteBuffer) throws(EtcdError) {
        self = try decodeEtcd(
            buffer, typeName: "etcdserverpb.LeaseKeepAliveResponse",
            unpack: { etcdserverpb__lease_keep_alive_response__unpack($0, $1, $2) }
        ) { message throws(EtcdError) in EtcdLeaseKeepAliveResponse(id: message.id, ttlSeconds: message.ttl) }
    }
}
