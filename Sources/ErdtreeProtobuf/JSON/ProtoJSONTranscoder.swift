internal import CProtobufC
import ErdtreeRPC
import NIOCore

/// Connect's JSON codec for one method: the proto3 JSON mapping (`ProtoJSON`) over the
/// protobuf-c descriptors of its request and response types. `MethodTable` makes one per
/// method; the router calls it on the call's event loop, once per JSON message.
package struct ProtoJSONTranscoder: MessageTranscoder, @unchecked Sendable {
    // @unchecked: the descriptors are immutable C globals, shared by every thread.
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
}
