internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import NIOCore

// grpc.health.v1 messages (grpc/grpc doc/health-checking.md).

struct HealthCheckRequest {
    var service: String

    init(decoding buffer: ByteBuffer) throws(RPCStatus) {
        service = try ProtobufCCodec.withUnpacked(
            buffer, typeName: "grpc.health.v1.HealthCheckRequest",
            unpack: { grpc__health__v1__health_check_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            ProtobufCCodec.string(message.pointee.service)
        }
    }
}

/// `HealthCheckResponse.ServingStatus`.
public enum ServingStatus: Int, Sendable {
    case unknown = 0
    case serving = 1
    case notServing = 2
    case serviceUnknown = 3
}

struct HealthCheckResponse {
    var status: ServingStatus

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var message = Grpc__Health__V1__HealthCheckResponse()
        grpc__health__v1__health_check_response__init(&message)
        message.status = Grpc__Health__V1__HealthCheckResponse__ServingStatus(rawValue: UInt32(status.rawValue))
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}
