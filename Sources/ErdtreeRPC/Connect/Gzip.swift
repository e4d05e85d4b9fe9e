import CZlib
import NIOCore

/// gzip (RFC 1952) through zlib, for Connect's `content-encoding`/`accept-encoding`.
enum Gzip {
    /// Inflates `bytes`, refusing output past `limit` bytes (a small body can expand to
    /// gigabytes) with RESOURCE_EXHAUSTED, and anything that is not one whole gzip member
    /// with INVALID_ARGUMENT.
    static func decompress(_ bytes: ByteBuffer, limit: Int, allocator: ByteBufferAllocator) throws(RPCStatus)
        -> ByteBuffer
    {
        var stream = z_stream()
        guard czlib_inflate_init_gzip(&stream) == Z_OK else { throw RPCStatus(.internal, "zlib would not start") }
        defer { inflateEnd(&stream) }
        var out = allocator.buffer(capacity: min(max(bytes.readableBytes * 4, 256), limit + 1))
        var input = bytes
        let result: Int32 = input.withUnsafeMutableReadableBytes { source in
            stream.next_in = source.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_in = uInt(source.count)
            var status = Z_OK
            repeat {
                if out.writableBytes == 0 { out.reserveCapacity(minimumWritableBytes: out.capacity) }
                out.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { target in
                    stream.next_out = target.baseAddress?.assumingMemoryBound(to: Bytef.self)
                    stream.avail_out = uInt(target.count)
                    status = inflate(&stream, Z_NO_FLUSH)
                    return target.count - Int(stream.avail_out)
                }
                // Z_OK: progress, go on; Z_STREAM_END: done; anything else (a truncated or
                // damaged stream) is an error.
            } while status == Z_OK && out.readableBytes <= limit
            return status
        }
        if out.readableBytes > limit {
            throw RPCStatus(.resourceExhausted, "the request inflates past the \(limit)-byte limit")
        }
        guard result == Z_STREAM_END, stream.avail_in == 0 else {
            throw RPCStatus(.invalidArgument, "the request body is not valid gzip")
        }
        return out
    }

    /// Deflates `bytes` into one gzip member.
    static func compress(_ bytes: ByteBuffer, allocator: ByteBufferAllocator) -> ByteBuffer {
        var stream = z_stream()
        guard czlib_deflate_init_gzip(&stream, Z_DEFAULT_COMPRESSION) == Z_OK else { return bytes }
        defer { deflateEnd(&stream) }
        var out = allocator.buffer(capacity: Int(deflateBound(&stream, uLong(bytes.readableBytes))))
        var input = bytes
        input.withUnsafeMutableReadableBytes { source in
            stream.next_in = source.baseAddress?.assumingMemoryBound(to: Bytef.self)
            stream.avail_in = uInt(source.count)
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: 0) { target in
                stream.next_out = target.baseAddress?.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = uInt(target.count)
                _ = deflate(&stream, Z_FINISH)
                return target.count - Int(stream.avail_out)
            }
        }
        return out
    }
}
