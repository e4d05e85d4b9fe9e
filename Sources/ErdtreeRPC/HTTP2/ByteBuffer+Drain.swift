import NIOCore

extension ByteBuffer {
    /// Moves up to `destination.count` readable bytes into `destination` (an nghttp2 DATA
    /// frame buffer), rewinding to offset 0 once empty so a long stream's buffer stays small.
    /// - Returns: the number of bytes moved.
    mutating func drain(into destination: UnsafeMutableRawBufferPointer) -> Int {
        let count = Swift.min(destination.count, readableBytes)
        if count > 0 {
            withUnsafeReadableBytes { source in
                destination.copyMemory(from: UnsafeRawBufferPointer(rebasing: source.prefix(count)))
            }
            moveReaderIndex(forwardBy: count)
        }
        if readableBytes == 0 { clear() }
        return count
    }
}
