internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import ErdtreeStorage
import NIOCore

// The client side of the KVStore and Health messages: requests out, responses in.

extension GetRequest {
    init(key: [UInt8], minLSN: UInt64 = 0) {
        self.key = key
        self.minLSN = minLSN
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__GetRequest()
        erdtree__v1__get_request__init(&message)
        message.min_lsn = minLSN
        return withKey(key) { key in
            message.key = key
            return ProtobufCCodec.pack(&message, allocator: allocator)
        }
    }
}

extension GetResponse {
    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.GetResponse", unpack: { erdtree__v1__get_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            GetResponse(
                value: ValueBytes(ProtobufCCodec.bytes(of: message.pointee.value)), found: message.pointee.found != 0,
                lsn: message.pointee.lsn, expiresAtMs: message.pointee.expires_at_ms)
        }
    }
}

extension SetRequest {
    init(key: [UInt8], value: [UInt8], ttlMs: Int64) {
        self.key = key
        self.value = value
        self.ttlMs = ttlMs
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__SetRequest()
        erdtree__v1__set_request__init(&message)
        message.ttl_ms = ttlMs
        return withKey(key) { key in
            message.key = key
            return value.withUnsafeBytes { bytes in
                message.value = ProtobufCCodec.binaryData(viewing: bytes)
                return ProtobufCCodec.pack(&message, allocator: allocator)
            }
        }
    }
}

extension SetResponse {
    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.SetResponse", unpack: { erdtree__v1__set_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in SetResponse(lsn: message.pointee.lsn, epoch: message.pointee.epoch) }
    }
}

extension DeleteRequest {
    init(key: [UInt8]) {
        self.key = key
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Erdtree__V1__DeleteRequest()
        erdtree__v1__delete_request__init(&message)
        return withKey(key) { key in
            message.key = key
            return ProtobufCCodec.pack(&message, allocator: allocator)
        }
    }
}

extension DeleteResponse {
    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        self = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "erdtree.v1.DeleteResponse",
            unpack: { erdtree__v1__delete_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            DeleteResponse(
                deleted: message.pointee.deleted != 0, lsn: message.pointee.lsn, epoch: message.pointee.epoch)
        }
    }
}

extension HealthCheckRequest {
    init(service: String) {
        self.service = service
    }

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Grpc__Health__V1__HealthCheckRequest()
        grpc__health__v1__health_check_request__init(&message)
        return service.withCString { service in
            message.service = UnsafeMutablePointer(mutating: service)
            return ProtobufCCodec.pack(&message, allocator: allocator)
        }
    }
}

extension HealthCheckResponse {
    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        let raw = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "grpc.health.v1.HealthCheckResponse",
            unpack: { grpc__health__v1__health_check_response__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in Int(message.pointee.status.rawValue) }
        status = ServingStatus(rawValue: raw) ?? .unknown
    }
}

/// `erdtree.v1.StatusRequest` has no fields: its encoding is empty.
func encodeStatusRequest(allocator: ByteBufferAllocator) -> ByteBuffer {
    var message = Erdtree__V1__StatusRequest()
    erdtree__v1__status_request__init(&message)
    return ProtobufCCodec.pack(&message, allocator: allocator)
}

/// A NUL-terminated copy of `key` for a protobuf-c `string` field, valid inside `body`.
private func withKey<Result>(_ key: [UInt8], _ body: (UnsafeMutablePointer<CChar>) -> Result) -> Result {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: key.count + 1) { buffer in
        for (i, byte) in key.enumerated() { buffer[i] = CChar(bitPattern: byte) }
        buffer[key.count] = 0
        guard let base = buffer.baseAddress else { preconditionFailure("temporary allocation has no base address") }
        return body(base)
    }
}
