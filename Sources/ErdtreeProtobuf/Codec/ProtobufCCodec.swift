package import CProtobufC  // bytes(of:) and binaryData(viewing:) take and make ProtobufCBinaryData
import ErdtreeRPC
import NIOCore

/// The generic half of protobuf-c: unpack and pack any generated message through its
/// generated functions, so each message type needs only a field-by-field translation (the
/// node's message mirrors, which own the generated structs).
///
/// Called on every RPC from another module, so what is generic here is `@inlinable` (and the
/// type `@usableFromInline`, which Swift 6.3 needs to serialize it; see `CArena`): the mirrors
/// compile it specialized for their message types, as when it lived beside them. Inlinable
/// code may name only public declarations, so it names no protobuf-c type: it hands raw
/// pointers to small non-inlinable functions here, which do the C calls.
@usableFromInline
package enum ProtobufCCodec {
    /// Decodes `buffer` with a generated `…__unpack` function and runs `body` on the result.
    ///
    /// The message and its strings are unpacked into an arena whose first block is on the
    /// stack, so decoding a typical request costs no heap allocation; they are gone when this
    /// returns, so `body` copies out what it keeps.
    /// - Parameters:
    ///   - typeName: the message's full name, for the error.
    ///   - unpack: the generated unpack function, e.g. `{ erdtree__v1__get_request__unpack($0, $1, $2) }`.
    ///     Its `Allocator` is protobuf-c's `ProtobufCAllocator`, generic only so that this
    ///     inlinable code need not name it.
    /// - Throws: `RPCStatus.invalidArgument` naming the message type when the bytes are
    ///   not a valid encoding; whatever `body` throws.
    @inlinable
    package static func withUnpacked<Message, Allocator, Result>(
        _ buffer: ByteBuffer, typeName: StaticString,
        unpack: (UnsafeMutablePointer<Allocator>, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        _ body: (UnsafeMutablePointer<Message>) throws(RPCStatus) -> Result
    ) throws(RPCStatus) -> Result {
        try CArena.withStackBlock { arena throws(RPCStatus) in
            try body(unpacked(buffer, typeName: typeName, into: &arena, unpack: unpack))
        }
    }

    /// The same, unpacking into `arena`, which a decoder keeps for a stream of large messages
    /// (a replication batch unpacks into hundreds of pieces): the arena is sized from the
    /// encoding first and reset when this returns, so once it has grown to fit the stream's
    /// messages a decode costs no malloc.
    @inlinable
    package static func withUnpacked<Message, Allocator, Result>(
        _ buffer: ByteBuffer, typeName: StaticString, reusing arena: inout CArena,
        unpack: (UnsafeMutablePointer<Allocator>, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?,
        _ body: (UnsafeMutablePointer<Message>) throws(RPCStatus) -> Result
    ) throws(RPCStatus) -> Result {
        defer { arena.reset() }
        arena.reserve(bytes: unpackedBytes(encodedBytes: buffer.readableBytes))
        return try body(unpacked(buffer, typeName: typeName, into: &arena, unpack: unpack))
    }

    @inlinable
    static func unpacked<Message, Allocator>(
        _ buffer: ByteBuffer, typeName: StaticString, into arena: inout CArena,
        unpack: (UnsafeMutablePointer<Allocator>, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<Message>?
    ) throws(RPCStatus) -> UnsafeMutablePointer<Message> {
        assert(MemoryLayout<Allocator>.size == CArena.protobufCAllocatorBytes, "unpack must take a ProtobufCAllocator")
        let message = arena.withProtobufCAllocator { allocator in
            buffer.withUnsafeReadableBytes { bytes in
                UnsafeMutableRawPointer(
                    unpack(
                        allocator.assumingMemoryBound(to: Allocator.self), bytes.count,
                        bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)))
            }
        }
        guard let message else { throw undecodable(typeName, bytes: buffer.readableBytes) }
        return message.assumingMemoryBound(to: Message.self)
    }

    @usableFromInline
    static func undecodable(_ typeName: StaticString, bytes: Int) -> RPCStatus {
        RPCStatus(.invalidArgument, "cannot decode \(typeName): not a valid protobuf encoding (\(bytes) bytes)")
    }

    /// What to reserve for unpacking `encodedBytes`: an unpacked message takes about 1.7 times
    /// its encoding for 100-byte values (each entry's struct, key and value, 16-byte aligned)
    /// and more for tiny ones, which then spill into another block. Capped, so one huge
    /// message does not make a kept arena huge.
    @usableFromInline
    static func unpackedBytes(encodedBytes: Int) -> Int {
        min(encodedBytes * 3 + 1024, CArena.maxKeptBytes)
    }

    /// Encodes a filled-in message into a new buffer from `allocator`, leaving the gRPC
    /// length prefix's worth of headroom in front so the transport frames it in place.
    @inlinable
    package static func pack<Message>(_ message: inout Message, allocator: ByteBufferAllocator) -> ByteBuffer {
        withUnsafeMutablePointer(to: &message) { pack(message: UnsafeRawPointer($0), allocator: allocator) }
    }

    /// `pack(_:allocator:)` for a generated message (which starts with its `ProtobufCMessage`
    /// header) at `message`.
    @usableFromInline
    static func pack(message: UnsafeRawPointer, allocator: ByteBufferAllocator) -> ByteBuffer {
        let base = message.assumingMemoryBound(to: ProtobufCMessage.self)
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

    /// The length on the wire of the last occurrence of length-delimited field `number` (the
    /// one protobuf-c keeps for a singular field) in the encoded message `buffer`; nil when
    /// there is none. It tells a string holding a NUL byte, which protobuf-c hands over cut at
    /// the NUL, from one that does not. The scan stops at a malformed tail: called once a
    /// generated unpack has accepted the bytes, it never meets one.
    package static func wireLength(ofField number: UInt32, in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { bytes in
            var reader = WireReader(bytes)
            var length: Int?
            while let field = try? reader.next() {
                if field.number == number, case .lengthDelimited(let value) = field.value { length = value.count }
            }
            return length
        }
    }

    /// Copies a protobuf-c string field (NUL-terminated; the empty string is a static "").
    @inlinable
    package static func bytes(ofString pointer: UnsafeMutablePointer<CChar>?) -> [UInt8] {
        guard let pointer else { return [] }
        var length = 0
        while pointer[length] != 0 { length += 1 }
        return pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
            Array(UnsafeBufferPointer(start: $0, count: length))
        }
    }

    @inlinable
    package static func string(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    /// Copies a protobuf-c `bytes` field.
    package static func bytes(of data: ProtobufCBinaryData) -> [UInt8] {
        guard let start = data.data, data.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: start, count: data.len))
    }

    /// A protobuf-c `bytes` field that points at `bytes` (not a copy): valid only while they are.
    package static func binaryData(viewing bytes: UnsafeRawBufferPointer) -> ProtobufCBinaryData {
        let data = UnsafeMutablePointer(mutating: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        return ProtobufCBinaryData(len: bytes.count, data: data)
    }
}
