import NIOCore

/// Splits a gRPC request or response body into messages (gRPC PROTOCOL-HTTP2,
/// "Length-Prefixed-Message": 1-byte compressed flag, 4-byte big-endian length, bytes).
///
/// Bytes arrive in arbitrary DATA-frame chunks; a message is handed out as a slice of
/// the accumulated buffer, so a message that arrives whole is copied once, from the
/// frame into the buffer.
struct GRPCMessageDeframer {
    static let prefixBytes = 5

    let maxMessageBytes: Int
    private(set) var buffer: ByteBuffer

    init(maxMessageBytes: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.maxMessageBytes = maxMessageBytes
        self.buffer = allocator.buffer(capacity: 0)
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        // Reclaim the consumed front before growing: on a stream whose chunks never end on
        // a message boundary the buffer is never empty, so `next()` never rewinds it, and
        // it would otherwise keep every message the stream ever carried.
        if buffer.readableBytes == 0, buffer.capacity < bytes.count {
            // The usual case, a message arriving whole into an empty buffer: storage of the
            // right size at once, rather than a copy of the empty storage grown to fit.
            buffer.clear(minimumCapacity: bytes.count)
        } else if buffer.readerIndex > 0, buffer.writableBytes < bytes.count {
            buffer.discardReadBytes()
        }
        buffer.writeBytes(bytes)
    }

    /// Set for a Connect stream whose `connect-content-encoding` is gzip: messages flagged
    /// compressed are inflated (within `maxMessageBytes`) instead of refused.
    var gzipAccepted = false

    /// Lets go of an unfinished message, storage included: the stream wants no more messages.
    /// A no-op when nothing is buffered (every call that ends normally), so it costs no
    /// allocation then.
    mutating func discard() {
        if buffer.readableBytes > 0 { buffer = ByteBuffer() }
    }

    /// True when some bytes of an unfinished message are buffered.
    var hasPartialMessage: Bool { buffer.readableBytes > 0 }

    /// Describes the unfinished message, for the error when the stream ends inside it.
    var partialMessageDescription: String {
        guard let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self) else {
            return "\(buffer.readableBytes) of the \(Self.prefixBytes)-byte message prefix"
        }
        return "\(buffer.readableBytes - Self.prefixBytes) of \(length) message bytes"
    }

    /// The next complete message, or nil until more bytes arrive.
    /// - Throws: `RPCStatus` `.resourceExhausted` when the prefix announces more than
    ///   `maxMessageBytes` (checked before buffering the body, so the peer cannot make us
    ///   hold it), `.internal` for a compressed message (no `grpc-encoding` is accepted)
    ///   unless `gzipAccepted`.
    mutating func next() throws(RPCStatus) -> ByteBuffer? {
        guard buffer.readableBytes >= Self.prefixBytes,
            let flag = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self),
            let length = buffer.getInteger(at: buffer.readerIndex + 1, as: UInt32.self)
        else { return nil }
        if Int(length) > maxMessageBytes {
            throw RPCStatus(
                .resourceExhausted,
                "message of \(length) bytes exceeds the limit of \(maxMessageBytes) bytes (max: \(maxMessageBytes), actual: \(length))"
            )
        }
        if flag & 0x01 != 0 && !gzipAccepted {
            throw RPCStatus(
                .internal, "message has the compressed flag set but the stream has no grpc-encoding")
        }
        guard buffer.readableBytes >= Self.prefixBytes + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: Self.prefixBytes)
        guard var message = buffer.readSlice(length: Int(length)) else { return nil }
        if flag & 0x01 != 0 {
            message = try Gzip.decompress(message, limit: maxMessageBytes, allocator: ByteBufferAllocator())
        }
        if buffer.readableBytes == 0 {
            // Start the next message at offset 0 instead of growing forever.
            buffer.clear()
        }
        return message
    }
}

/// Writes the length prefix in front of an outgoing message.
public enum GRPCMessageFramer {
    /// Bytes an encoder leaves free in front of a message so the prefix can be written in
    /// place (see `write(_:into:)`).
    public static let headroomBytes = GRPCMessageDeframer.prefixBytes

    /// Appends the framed message to `out`. When `out` is empty and the message was encoded
    /// with `headroomBytes` free in front, the message's own storage becomes `out`: no copy
    /// and no allocation on the unary answer path.
    /// `flags` is the prefix's first byte: 0, or 1 for a compressed message.
    static func write(_ message: consuming ByteBuffer, into out: inout ByteBuffer, flags: UInt8 = 0) {
        let length = message.readableBytes
        if out.readableBytes == 0, message.readerIndex >= headroomBytes {
            message.moveReaderIndex(to: message.readerIndex - headroomBytes)
            message.setInteger(flags, at: message.readerIndex)
            message.setInteger(UInt32(length), at: message.readerIndex + 1)
            out = message
            return
        }
        out.writeInteger(flags)
        out.writeInteger(UInt32(length))
        out.writeBuffer(&message)
    }
}
