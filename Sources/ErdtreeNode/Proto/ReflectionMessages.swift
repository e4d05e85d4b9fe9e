internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import ErdtreeRPC
import NIOCore

// grpc.reflection.v1 ServerReflection messages (grpc/grpc doc/server-reflection.md).
// v1alpha has the same messages with the same field numbers, so one codec serves both.

/// What a reflection client asked.
enum ReflectionQuery: Equatable {
    case fileByFilename(String)
    case fileContainingSymbol(String)
    case fileContainingExtension(type: String, number: Int32)
    case allExtensionNumbersOfType(String)
    case listServices
    case notSet
}

/// What the server answers to one query.
enum ReflectionAnswer {
    case files([[UInt8]])
    case services([String])
    case extensionNumbers(type: String, numbers: [Int32])
    /// `code` is a gRPC status code, as `ErrorResponse.error_code` carries.
    case error(code: RPCStatus.Code, message: String)
}

enum ReflectionCodec {
    /// Decodes one `ServerReflectionRequest`, lets `resolve` answer it, and encodes the
    /// `ServerReflectionResponse` (echoing the request as `original_request`).
    static func respond(
        to request: ByteBuffer, allocator: ByteBufferAllocator,
        resolve: (ReflectionQuery) -> ReflectionAnswer
    ) throws(RPCStatus) -> ByteBuffer {
        try ProtobufCCodec.withUnpacked(
            request, typeName: "grpc.reflection.v1.ServerReflectionRequest",
            unpack: { grpc__reflection__v1__server_reflection_request__unpack($0, $1, $2) }
        ) { message throws(RPCStatus) in
            let answer = resolve(query(of: message.pointee))
            return encode(answer, original: message, allocator: allocator)
        }
    }

    private static func query(of request: Grpc__Reflection__V1__ServerReflectionRequest) -> ReflectionQuery {
        switch request.message_request_case {
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
            return .fileByFilename(ProtobufCCodec.string(request.file_by_filename))
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
            return .fileContainingSymbol(ProtobufCCodec.string(request.file_containing_symbol))
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
            guard let ext = request.file_containing_extension else { return .notSet }
            return .fileContainingExtension(
                type: ProtobufCCodec.string(ext.pointee.containing_type), number: ext.pointee.extension_number)
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
            return .allExtensionNumbersOfType(ProtobufCCodec.string(request.all_extension_numbers_of_type))
        case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
            return .listServices
        default:
            return .notSet
        }
    }

    private static func encode(
        _ answer: ReflectionAnswer, original: UnsafeMutablePointer<Grpc__Reflection__V1__ServerReflectionRequest>,
        allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        var arena = CArena()
        var response = Grpc__Reflection__V1__ServerReflectionResponse()
        grpc__reflection__v1__server_reflection_response__init(&response)
        response.valid_host = original.pointee.host
        response.original_request = original

        switch answer {
        case .files(let files):
            let body = arena.make(Grpc__Reflection__V1__FileDescriptorResponse.self) {
                grpc__reflection__v1__file_descriptor_response__init($0)
            }
            let list = arena.array(of: ProtobufCBinaryData.self, count: files.count)
            for (i, file) in files.enumerated() {
                list[i] = ProtobufCBinaryData(len: file.count, data: arena.copy(file))
            }
            body.pointee.n_file_descriptor_proto = files.count
            body.pointee.file_descriptor_proto = list
            response.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE
            response.file_descriptor_response = body
        case .services(let names):
            let body = arena.make(Grpc__Reflection__V1__ListServiceResponse.self) {
                grpc__reflection__v1__list_service_response__init($0)
            }
            let list = arena.array(
                of: UnsafeMutablePointer<Grpc__Reflection__V1__ServiceResponse>?.self, count: names.count)
            for (i, name) in names.enumerated() {
                let service = arena.make(Grpc__Reflection__V1__ServiceResponse.self) {
                    grpc__reflection__v1__service_response__init($0)
                }
                service.pointee.name = arena.cString(name)
                list[i] = service
            }
            body.pointee.n_service = names.count
            body.pointee.service = list
            response.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE
            response.list_services_response = body
        case .extensionNumbers(let type, let numbers):
            let body = arena.make(Grpc__Reflection__V1__ExtensionNumberResponse.self) {
                grpc__reflection__v1__extension_number_response__init($0)
            }
            body.pointee.base_type_name = arena.cString(type)
            let list = arena.array(of: Int32.self, count: numbers.count)
            for (i, number) in numbers.enumerated() { list[i] = number }
            body.pointee.n_extension_number = numbers.count
            body.pointee.extension_number = list
            response.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE
            response.all_extension_numbers_response = body
        case .error(let code, let message):
            let body = arena.make(Grpc__Reflection__V1__ErrorResponse.self) {
                grpc__reflection__v1__error_response__init($0)
            }
            body.pointee.error_code = Int32(code.rawValue)
            body.pointee.error_message = arena.cString(message)
            response.message_response_case =
                GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE
            response.error_response = body
        }
        return ProtobufCCodec.pack(&response, allocator: allocator)
    }
}
