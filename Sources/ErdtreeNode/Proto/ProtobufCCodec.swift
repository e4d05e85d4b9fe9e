internal import CProtobufC
internal import ErdtreeProto
import ErdtreeRPC
import NIOCore

/// The generic half of protobuf-c: unpack and pack any generated message through its
/// descriptor, so each message type needs only a field-by-field translation.
///
/// protobuf-c allocates an unpacked message (and its strings) with malloc; `withUnpacked`
/// frees it before returning, so callers copy out what they keep.
enum ProtobufCCodec {
    /// Decodes `buffer` with a generated `…__unpack` function and runs `body` on the result.
    /// - Parameters:
    ///   - typeName: the message's full name, for the error.
    ///   - unpack: the generated unpack function, e.g. `{ erdtree__v1__get_request__unpack(nil, $0, $1) }`.
    /// - Throws: `RPCStatus.invalidArgument` naming the message type when the bytes are
    ///   not a valid encoding; whatever `body` throws.
    static func withUnpacked<Message, Result>(
        _ buffer: ByteBuffer, typeName: StaticString,
        unpack: (Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        _ body: (UnsafeMutablePointer<Message>) throws(RPCStatus) -> Result
    ) throws(RPCStatus) -> Result {
        let unpacked = buffer.withUnsafeReadableBytes { bytes in
            unpack(bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        guard let unpacked else {
            throw RPCStatus(
                .invalidArgument,
                "cannot decode \(typeName): not a valid protobuf encoding (\(buffer.readableBytes) bytes)")
        }
        // Every generated message starts with its ProtobufCMessage header.
        defer {
            protobuf_c_message_free_unpacked(
                UnsafeMutableRawPointer(unpacked).assumingMemoryBound(to: ProtobufCMessage.self), nil)
        }
        return try body(unpacked)
    }

    /// Encodes a filled-in message into a new buffer from `allocator`.
    static func pack<Message>(_ message: inout Message, allocator: ByteBufferAllocator) -> ByteBuffer {
        withUnsafeMutablePointer(to: &message) { pointer in
            let base = UnsafeRawPointer(pointer).assumingMemoryBound(to: ProtobufCMessage.self)
            let size = protobuf_c_message_get_packed_size(base)
            var buffer = allocator.buffer(capacity: size)
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
                guard let start = out.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
                return protobuf_c_message_pack(base, start)
            }
            return buffer
        }
    }

    /// Copies a protobuf-c string field (NUL-terminated; the empty string is a static "").
    static func bytes(ofString pointer: UnsafeMutablePointer<CChar>?) -> [UInt8] {
        guard let pointer else { return [] }
        var length = 0
        while pointer[length] != 0 { length += 1 }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    static func bytes(of data: ProtobufCBinaryData) -> [UInt8] {
        guard let start = data.data, data.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: start, count: data.len))
    }

    /// Runs `body` with a `ProtobufCBinaryData` view of `bytes`, valid only inside `body`.
    static func withBinaryData<Result>(_ bytes: [UInt8], _ body: (ProtobufCBinaryData) -> Result) -> Result {
        bytes.withUnsafeBufferPointer { buffer in
            body(ProtobufCBinaryData(len: buffer.count, data: UnsafeMutablePointer(mutating: buffer.baseAddress)))
        }
    }
}
