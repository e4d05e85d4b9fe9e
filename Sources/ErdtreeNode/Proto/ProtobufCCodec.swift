internal import CProtobufC
internal import ErdtreeProto
import ErdtreeRPC
import NIOCore

#if canImport(Glibc)
    import Glibc
#endif

/// The generic half of protobuf-c: unpack and pack any generated message through its
/// descriptor, so each message type needs only a field-by-field translation.
///
/// protobuf-c allocates an unpacked message (and its strings) with malloc; `withUnpacked`
/// frees it before returning, so callers copy out what they keep.
enum ProtobufCCodec {
    /// Decodes `buffer` with a generated `…__unpack` function and runs `body` on the result.
    ///
    /// protobuf-c allocates the message and its strings through the allocator it is given;
    /// here that is a bump arena (malloc only past its end): on the stack (`arenaBytes`), so
    /// decoding a typical request costs no heap allocation at all, or a caller's `scratch` for
    /// a stream of large messages (a replication batch unpacks into hundreds of pieces).
    /// - Parameters:
    ///   - typeName: the message's full name, for the error.
    ///   - scratch: reusable memory sized to the message, instead of the stack arena.
    ///   - unpack: the generated unpack function, e.g. `{ erdtree__v1__get_request__unpack($0, $1, $2) }`.
    /// - Throws: `RPCStatus.invalidArgument` naming the message type when the bytes are
    ///   not a valid encoding; whatever `body` throws.
    static func withUnpacked<Message, Result>(
        _ buffer: ByteBuffer, typeName: StaticString, scratch: DecodeScratch? = nil,
        unpack: (UnsafeMutablePointer<ProtobufCAllocator>, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<
            Message
        >?,
        _ body: (UnsafeMutablePointer<Message>) throws(RPCStatus) -> Result
    ) throws(RPCStatus) -> Result {
        try withArenaAllocator(scratch: scratch, for: buffer.readableBytes) { allocator throws(RPCStatus) in
            let unpacked = buffer.withUnsafeReadableBytes { bytes in
                unpack(allocator, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
            }
            guard let unpacked else {
                throw RPCStatus(
                    .invalidArgument,
                    "cannot decode \(typeName): not a valid protobuf encoding (\(buffer.readableBytes) bytes)")
            }
            // Every generated message starts with its ProtobufCMessage header.
            defer {
                protobuf_c_message_free_unpacked(
                    UnsafeMutableRawPointer(unpacked).assumingMemoryBound(to: ProtobufCMessage.self), allocator)
            }
            return try body(unpacked)
        }
    }

    static let arenaBytes = 1024

    private struct Arena {
        var base: UnsafeMutableRawPointer
        var used: Int
        var capacity: Int
    }

    private static func withArenaAllocator<Value>(
        scratch: DecodeScratch?, for messageBytes: Int,
        _ body: (UnsafeMutablePointer<ProtobufCAllocator>) throws(RPCStatus) -> Value
    ) throws(RPCStatus) -> Value {
        if let scratch {
            return try withArenaAllocator(in: scratch.region(for: messageBytes), body)
        }
        return try withUnsafeTemporaryAllocation(byteCount: arenaBytes, alignment: 16) {
            region throws(RPCStatus) in
            try withArenaAllocator(in: region, body)
        }
    }

    private static func withArenaAllocator<Value>(
        in region: UnsafeMutableRawBufferPointer,
        _ body: (UnsafeMutablePointer<ProtobufCAllocator>) throws(RPCStatus) -> Value
    ) throws(RPCStatus) -> Value {
        let result: Result<Value, RPCStatus> = {
            guard let base = region.baseAddress else { preconditionFailure("an arena region has no base") }
            var arena = Arena(base: base, used: 0, capacity: region.count)
            return withUnsafeMutablePointer(to: &arena) { arenaPointer in
                var allocator = ProtobufCAllocator(
                    alloc: { data, size in
                        guard let arena = data?.assumingMemoryBound(to: Arena.self) else { return malloc(size) }
                        let start = (arena.pointee.used + 15) & ~15
                        guard start + size <= arena.pointee.capacity else { return malloc(size) }
                        arena.pointee.used = start + size
                        return arena.pointee.base + start
                    },
                    free: { data, pointer in
                        guard let pointer else { return }
                        if let arena = data?.assumingMemoryBound(to: Arena.self),
                            pointer >= arena.pointee.base, pointer < arena.pointee.base + arena.pointee.capacity
                        {
                            return  // released with the arena
                        }
                        Glibc.free(pointer)
                    },
                    allocator_data: UnsafeMutableRawPointer(arenaPointer))
                return withUnsafeMutablePointer(to: &allocator) { allocatorPointer in
                    do throws(RPCStatus) {
                        return .success(try body(allocatorPointer))
                    } catch {
                        return .failure(error)
                    }
                }
            }
        }()
        return try result.get()
    }

    /// Encodes a filled-in message into a new buffer from `allocator`, leaving the gRPC
    /// length prefix's worth of headroom in front so the transport frames it in place.
    static func pack<Message>(_ message: inout Message, allocator: ByteBufferAllocator) -> ByteBuffer {
        withUnsafeMutablePointer(to: &message) { pointer in
            let base = UnsafeRawPointer(pointer).assumingMemoryBound(to: ProtobufCMessage.self)
            let size = protobuf_c_message_get_packed_size(base)
            let headroom = GRPCMessageFramer.headroomBytes
            var buffer = allocator.buffer(capacity: headroom + size)
            buffer.moveWriterIndex(forwardBy: headroom)
            buffer.moveReaderIndex(forwardBy: headroom)
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
        bytes.withUnsafeBytes { withBinaryData($0, body) }
    }

    static func withBinaryData<Result>(_ bytes: UnsafeRawBufferPointer, _ body: (ProtobufCBinaryData) -> Result)
        -> Result
    {
        let data = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        return body(ProtobufCBinaryData(len: bytes.count, data: data))
    }
}

/// Memory one decoder reuses for message after message (see `ProtobufCCodec.withUnpacked`).
/// Not thread-safe: one per stream, used on its event loop.
final class DecodeScratch {
    /// An unpacked message takes about 1.7 times its encoding for 100-byte values (each entry's
    /// struct, key and value, 16-byte aligned) and more for tiny ones, which then spill to malloc.
    private static let bytesPerEncodedByte = 3
    /// Past this the scratch stops growing; larger messages spill to malloc rather than pin
    /// that much memory for the stream's lifetime.
    private static let maxBytes = 8 << 20

    private var memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)

    deinit {
        memory.deallocate()
    }

    func region(for messageBytes: Int) -> UnsafeMutableRawBufferPointer {
        let wanted = min(messageBytes * Self.bytesPerEncodedByte + 1024, Self.maxBytes)
        if wanted > memory.count {
            memory.deallocate()
            memory = .allocate(byteCount: max(wanted, min(memory.count * 2, Self.maxBytes)), alignment: 16)
        }
        return memory
    }
}
