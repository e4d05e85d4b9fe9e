import Glibc

/// Reads the records of one segment in order, in large sequential chunks.
///
/// The reader detects and the caller decides (LevelDB's log reader): it yields each valid record,
/// then at most one `.tornTail` (the bytes left cannot hold the record they start, as when the
/// writer died mid-write) or `.corrupt` (the bytes are not a valid record), and stops. Whether a
/// torn or corrupt record is repairable depends on where it is, which only recovery knows.
final class SegmentReader {
    enum Event {
        case record(WALRecord, offset: Int64, size: Int)
        case tornTail(offset: Int64)
        case corrupt(offset: Int64, lsn: UInt64?, reason: String)
    }

    private let fd: Int32
    private let path: String
    private let end: Int64
    /// Offset of the next record to decode.
    private(set) var offset: Int64
    private var buffer: UnsafeMutableRawBufferPointer
    /// File offset of `buffer[0]` and how many bytes of the buffer hold file data.
    private var bufferStart: Int64
    private var bufferCount = 0
    private var finished = false

    /// Reads `[start, end)` of the file open as `fd`; `start` must be a record boundary.
    init(fd: Int32, path: String, start: Int64, end: Int64, chunkBytes: Int = 1 << 20) {
        self.fd = fd
        self.path = path
        self.end = end
        self.offset = start
        self.bufferStart = start
        self.buffer = .allocate(byteCount: chunkBytes, alignment: 16)
    }

    deinit {
        buffer.deallocate()
    }

    func next() throws(WALError) -> Event? {
        guard !finished else { return nil }
        guard offset < end else {
            finished = true
            return nil
        }
        while true {
            let position = Int(offset - bufferStart)
            switch RecordFormat.decodeRecord(UnsafeRawBufferPointer(rebasing: buffer[position..<bufferCount])) {
            case .record(let record, let size):
                let recordOffset = offset
                offset += Int64(size)
                return .record(record, offset: recordOffset, size: size)
            case .corrupt(let lsn, let reason):
                finished = true
                return .corrupt(offset: offset, lsn: lsn, reason: reason)
            case .incomplete(let needed):
                guard offset + Int64(needed) <= end else {
                    finished = true
                    return .tornTail(offset: offset)
                }
                try refill(atLeast: needed)
            }
        }
    }

    /// Moves the window to start at `offset` with at least `needed` bytes in it.
    private func refill(atLeast needed: Int) throws(WALError) {
        if needed > buffer.count {
            buffer.deallocate()
            buffer = .allocate(byteCount: needed, alignment: 16)
        }
        let wanted = Int(min(Int64(buffer.count), end - offset))
        let read = try System.pread(
            fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), offset: offset, path: path)
        guard read >= needed else {
            // The file shrank under us; nothing else truncates a segment while it is read.
            throw .io(call: "pread", path: path, errno: EIO)
        }
        bufferStart = offset
        bufferCount = read
    }

    /// Reads and decodes the header of a segment `fileSize` bytes long (shorter than a header: a
    /// problem saying so).
    static func decodeHeader(fd: Int32, path: String, fileSize: Int64) throws(WALError) -> Result<
        RecordFormat.SegmentHeader, RecordFormat.HeaderProblem
    > {
        var bytes = [UInt8](repeating: 0, count: RecordFormat.headerSize)
        let count = Int(min(fileSize, Int64(RecordFormat.headerSize)))
        let read = try System.pread(fd, into: &bytes, count: count, offset: 0, path: path)
        return bytes.withUnsafeBytes { RecordFormat.decodeHeader(UnsafeRawBufferPointer(rebasing: $0[0..<read])) }
    }

    /// The offset of the first valid record that starts anywhere in `[from, end)`, or nil.
    ///
    /// Tells a torn write (nothing valid after the damage) from damage in the middle of the
    /// newest segment (a record that was written later survived). Tries every offset, since a
    /// damaged length says nothing about where the next record starts.
    static func firstValidRecord(fd: Int32, path: String, from start: Int64, end: Int64) throws(WALError) -> Int64? {
        guard start < end else { return nil }
        let count = Int(end - start)
        let tail = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 16)
        defer { tail.deallocate() }
        let read = try System.pread(fd, into: tail, offset: start, path: path)
        for position in 0..<read {
            if case .record = RecordFormat.decodeRecord(UnsafeRawBufferPointer(rebasing: tail[position..<read])) {
                return start + Int64(position)
            }
        }
        return nil
    }
}
