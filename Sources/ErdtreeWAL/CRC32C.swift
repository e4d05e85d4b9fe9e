import CErdtreeSystem

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every header and record.
///
/// With the SSE4.2 `crc32` instruction (through `CErdtreeSystem`, since Swift cannot emit it)
/// when the CPU has it: a 150-byte record then costs about a fifth of the table's time, on the
/// path of every WAL append, replicated batch and recovery. Otherwise table-driven
/// slicing-by-8: eight bytes per step through eight 256-entry tables, no allocation.
enum CRC32C {
    /// Checked once per process.
    static let hardware = erdtree_crc32c_available() != 0

    /// The CRC-32C of `bytes`; pass a previous result as `continuing` to checksum data in pieces.
    @inline(__always)
    static func checksum(_ bytes: UnsafeRawBufferPointer, continuing previous: UInt32 = 0) -> UInt32 {
        guard hardware, let base = bytes.baseAddress else { return software(bytes, continuing: previous) }
        return ~erdtree_crc32c_extend(~previous, base, bytes.count)
    }

    /// The table-driven CRC-32C, whatever the CPU (tests compare it with the instruction's).
    static func software(_ bytes: UnsafeRawBufferPointer, continuing previous: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return previous }
        let table = crc32cTables
        var crc = ~previous
        var offset = 0
        let count = bytes.count
        while count - offset >= 8 {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) ^ UInt64(crc)
            crc =
                table[7 &* 256 &+ Int(word & 0xFF)] ^ table[6 &* 256 &+ Int((word &>> 8) & 0xFF)]
                ^ table[5 &* 256 &+ Int((word &>> 16) & 0xFF)] ^ table[4 &* 256 &+ Int((word &>> 24) & 0xFF)]
                ^ table[3 &* 256 &+ Int((word &>> 32) & 0xFF)] ^ table[2 &* 256 &+ Int((word &>> 40) & 0xFF)]
                ^ table[1 &* 256 &+ Int((word &>> 48) & 0xFF)] ^ table[Int(word &>> 56)]
            offset &+= 8
        }
        while offset < count {
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc &>> 8)
            offset &+= 1
        }
        return ~crc
    }

    /// The CRC-32C of `bytes`.
    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }
}

/// Eight tables of 256 entries, back to back: table k maps a byte to its CRC after k more zero bytes.
/// Built once and never written again, so sharing the pointer between threads is safe.
nonisolated(unsafe) private let crc32cTables: UnsafePointer<UInt32> = {
    let table = UnsafeMutablePointer<UInt32>.allocate(capacity: 8 * 256)
    for index in 0..<256 {
        var crc = UInt32(index)
        for _ in 0..<8 {
            crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
        }
        table[index] = crc
    }
    for slice in 1..<8 {
        for index in 0..<256 {
            let previous = table[(slice - 1) * 256 + index]
            table[slice * 256 + index] = (previous >> 8) ^ table[Int(previous & 0xFF)]
        }
    }
    return UnsafePointer(table)
}()
