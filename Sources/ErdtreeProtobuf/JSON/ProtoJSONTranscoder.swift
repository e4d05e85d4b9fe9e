package import CProtobufC
import ErdtreeRPC
import NIOCore

/// Connect's JSON codec for one method, from its protobuf-c message descriptors.
package struct ProtoJSONTranscoder: MessageTranscoder, @unchecked Sendable {
    let input: ProtoJSON.Descriptor
    let output: ProtoJSON.Descriptor

    package func binaryRequest(fromJSON json: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus)
        -> ByteBuffer
    {
        do throws(ProtoJSON.Failure) {
            return try ProtoJSON.decode(json, as: input, allocator: allocator)
        } catch {
            throw RPCStatus(.invalidArgument, error.message)
        }
    }

    package func jsonResponse(fromBinary message: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus)
        -> ByteBuffer
    {
        let encoded = message.withUnsafeReadableBytes { bytes in
            Result { () throws(ProtoJSON.Failure) in try ProtoJSON.encode(bytes, as: output) }
        }
        switch encoded {
        case .success(let json): return allocator.buffer(bytes: json)
        case .failure(let error): throw RPCStatus(.internal, error.message)
        }
    }

    /// Every method of `service` (a protobuf-c generated service descriptor), with
    /// `noSideEffects` naming the paths Connect may serve to GET.
    package static func describe(_ service: ProtobufCServiceDescriptor, noSideEffects: Set<String>)
        -> [RPCMethodDescription]
    {
        let name = String(cString: service.name)
        return UnsafeBufferPointer(start: service.methods, count: Int(service.n_methods)).compactMap { method in
            guard let input = method.input, let output = method.output else { return nil }
            let path = "/\(name)/\(String(cString: method.name))"
            return RPCMethodDescription(
                path: path, transcoder: ProtoJSONTranscoder(input: input, output: output),
                noSideEffects: noSideEffects.contains(path))
        }
    }
}
