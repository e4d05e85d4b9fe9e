/// The on-disk format of segments and records; the only place that states a size or an offset.
///
/// docs/wal-format.md is the prose version of this file and changes with it. All integers are
/// little-endian.
///
///     segment := header record*
///     header  := magic[8] version:u32 firstLSN:u64 replicationID[16] crc:u32          (40 bytes)
///     record  := crc:u32 length:u32 payload[length]
///     payload := lsn:u64 timestampMs:i64 op:u8 expiresAtMs:i64 keyLength:u32 valueLength:u32 key value
///
/// op is 1 (set), 2 (delete) or 3 (epoch marker: no key, the epoch as a u64 value).
///
/// The header CRC covers the 36 bytes before it; a record's CRC covers its length field and payload.
enum RecordFormat {
    // MARK: Segment names

    /// Segments are named `<first LSN, 20 decimal digits>.log`, so names sort like LSNs.
    static let segmentNameDigits = 20
    static let segmentSuffix = ".log"

    // MARK: Segment header

    /// "ERDTWAL1".
    static let magic: [UInt8] = [0x45, 0x52, 0x44, 0x54, 0x57, 0x41, 0x4C, 0x31]
    /// Version 1: a segment as the writer wrote it, every LSN from its first one on, consecutive.
    static let version: UInt32 = 1
    /// Version 2: a segment compaction wrote: only live records, LSNs increasing with gaps.
    static let compactedVersion: UInt32 = 2
    static let replicationIDSize = 16

    static let headerMagicOffset = 0
    static let headerVersionOffset = 8
    static let headerFirstLSNOffset = 12
    static let headerReplicationIDOffset = 20
    static let headerCRCOffset = 36
    static let headerSize = 40

    // MARK: Record

    /// CRC (4 bytes) and payload length (4 bytes).
    static let recordHeaderSize = 8
    static let recordCRCOffset = 0
    static let recordLengthOffset = 4
    /// Offsets inside the record (not the payload).
    static let recordLSNOffset = 8
    static let recordTimestampOffset = 16
    static let recordOpOffset = 24
    static let recordExpiresAtOffset = 25
    static let recordKeyLengthOffset = 33
    static let recordValueLengthOffset = 37
    static let recordKeyOffset = 41
    /// Payload bytes before the key: LSN 8, timestamp 8, op 1, expiry 8, key length 4, value length 4.
    static let fixedPayloadSize = 33
    /// An epoch marker's value: the epoch, u64.
    static let epochValueSize = 8
    /// A length field above this is corruption, not a record: nothing the master accepts comes close.
    static let maxPayloadSize = 64 << 20

    // MARK: Names

    static func segmentName(firstLSN: UInt64) -> String {
        let digits = String(firstLSN)
        return String(repeating: "0", count: max(0, segmentNameDigits - digits.count)) + digits + segmentSuffix
    }

    /// The first LSN a segment's file name states, or nil when the name is not a segment's.
    static func firstLSN(segmentName name: String) -> UInt64? {
        let utf8 = Array(name.utf8)
        guard utf8.count == segmentNameDigits + segmentSuffix.utf8.count, name.hasSuffix(segmentSuffix) else {
            return nil
        }
        var value: UInt64 = 0
        for byte in utf8[0..<segmentNameDigits] {
            guard byte >= 0x30, byte <= 0x39 else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - 0x30))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    // MARK: Header coding

    struct SegmentHeader: Equatable {
        var firstLSN: UInt64
        var replicationID: [UInt8]
        /// Written by compaction (version 2): records have gaps between their LSNs.
        var compacted = false
    }

    static func encodeHeader(_ header: SegmentHeader) -> [UInt8] {
        precondition(header.replicationID.count == replicationIDSize, "replication ids are 16 bytes")
        var bytes = [UInt8](repeating: 0, count: headerSize)
        bytes.withUnsafeMutableBytes { raw in
            for (index, byte) in magic.enumerated() { raw[headerMagicOffset + index] = byte }
            let fileVersion = header.compacted ? compactedVersion : version
            raw.storeBytes(of: fileVersion.littleEndian, toByteOffset: headerVersionOffset, as: UInt32.self)
            raw.storeBytes(of: header.firstLSN.littleEndian, toByteOffset: headerFirstLSNOffset, as: UInt64.self)
            for (index, byte) in header.replicationID.enumerated() { raw[headerReplicationIDOffset + index] = byte }
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<headerCRCOffset]))
            raw.storeBytes(of: crc.littleEndian, toByteOffset: headerCRCOffset, as: UInt32.self)
        }
        return bytes
    }

    /// Decodes a header, or says what is wrong with it.
    static func decodeHeader(_ raw: UnsafeRawBufferPointer) -> Result<SegmentHeader, HeaderProblem> {
        guard raw.count >= headerSize else {
            return .failure(HeaderProblem("the file is \(raw.count) bytes, shorter than the \(headerSize)-byte header"))
        }
        guard raw[headerMagicOffset..<headerMagicOffset + magic.count].elementsEqual(magic) else {
            return .failure(HeaderProblem("the magic is not ERDTWAL1"))
        }
        let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: headerCRCOffset, as: UInt32.self))
        let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<headerCRCOffset]))
        guard stored == actual else {
            return .failure(HeaderProblem("header checksum mismatch (stored \(hex(stored)), computed \(hex(actual)))"))
        }
        let fileVersion = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: headerVersionOffset, as: UInt32.self))
        guard fileVersion == version || fileVersion == compactedVersion else {
            return .failure(
                HeaderProblem(
                    "format version \(fileVersion) is not a supported version (\(version), or \(compactedVersion) "
                        + "for compacted segments)"))
        }
        let firstLSN = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: headerFirstLSNOffset, as: UInt64.self))
        guard firstLSN >= 1 else {
            return .failure(HeaderProblem("the first LSN is 0, but LSNs start at 1"))
        }
        let id = Array(raw[headerReplicationIDOffset..<headerReplicationIDOffset + replicationIDSize])
        return .success(
            SegmentHeader(firstLSN: firstLSN, replicationID: id, compacted: fileVersion == compactedVersion))
    }

    struct HeaderProblem: Error {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    // MARK: Record coding

    /// Bytes a record with this key and value takes on disk.
    @inline(__always)
    static func recordSize(keyCount: Int, valueCount: Int) -> Int {
        recordHeaderSize + fixedPayloadSize + keyCount + valueCount
    }

    /// Appends one encoded record to `buffer`.
    static func appendRecord(
        lsn: UInt64,
        timestampMs: Int64,
        op: WALOp,
        expiresAtMs: Int64,
        key: [UInt8],
        value: [UInt8],
        to buffer: inout [UInt8]
    ) {
        let start = buffer.count
        let size = recordSize(keyCount: key.count, valueCount: value.count)
        precondition(size - recordHeaderSize <= maxPayloadSize, "the master limits keys and values far below 64 MiB")
        buffer.append(contentsOf: repeatElement(0, count: size))
        buffer.withUnsafeMutableBytes { whole in
            let raw = UnsafeMutableRawBufferPointer(rebasing: whole[start..<start + size])
            raw.storeBytes(
                of: UInt32(size - recordHeaderSize).littleEndian, toByteOffset: recordLengthOffset, as: UInt32.self)
            raw.storeBytes(of: lsn.littleEndian, toByteOffset: recordLSNOffset, as: UInt64.self)
            raw.storeBytes(of: timestampMs.littleEndian, toByteOffset: recordTimestampOffset, as: Int64.self)
            raw.storeBytes(of: op.rawValue, toByteOffset: recordOpOffset, as: UInt8.self)
            raw.storeBytes(of: expiresAtMs.littleEndian, toByteOffset: recordExpiresAtOffset, as: Int64.self)
            raw.storeBytes(of: UInt32(key.count).littleEndian, toByteOffset: recordKeyLengthOffset, as: UInt32.self)
            raw.storeBytes(of: UInt32(value.count).littleEndian, toByteOffset: recordValueLengthOffset, as: UInt32.self)
            let valueOffset = recordKeyOffset + key.count
            key.withUnsafeBytes {
                UnsafeMutableRawBufferPointer(rebasing: raw[recordKeyOffset..<valueOffset]).copyMemory(from: $0)
            }
            value.withUnsafeBytes {
                UnsafeMutableRawBufferPointer(rebasing: raw[valueOffset..<size]).copyMemory(from: $0)
            }
            let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[recordLengthOffset..<size]))
            raw.storeBytes(of: crc.littleEndian, toByteOffset: recordCRCOffset, as: UInt32.self)
        }
    }

    /// What the bytes at a record boundary hold.
    enum Decoded {
        /// A whole, valid record of `size` bytes.
        case record(WALRecord, size: Int)
        /// The record needs `needed` bytes from its start but fewer are there.
        case incomplete(needed: Int)
        /// The bytes are not a valid record. `lsn` is set only when the checksum matched.
        case corrupt(lsn: UInt64?, reason: String)
    }

    /// Decodes the record at the start of `raw`, which runs to the end of the readable bytes.
    ///
    /// The length is checked before the checksum so that a length that runs past the end reads
    /// as incomplete (the writer may have died mid-record); the checksum is checked before any
    /// other field, since a damaged record's fields cannot be trusted.
    @inline(__always)
    static func decodeRecord(_ raw: UnsafeRawBufferPointer) -> Decoded {
        guard raw.count >= recordHeaderSize else { return .incomplete(needed: recordHeaderSize) }
        let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: recordLengthOffset, as: UInt32.self)))
        guard length >= fixedPayloadSize, length <= maxPayloadSize else {
            return .corrupt(lsn: nil, reason: "length \(length) is outside \(fixedPayloadSize)...\(maxPayloadSize)")
        }
        let size = recordHeaderSize + length
        guard raw.count >= size else { return .incomplete(needed: size) }
        let stored = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: recordCRCOffset, as: UInt32.self))
        let actual = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[recordLengthOffset..<size]))
        guard stored == actual else {
            return .corrupt(lsn: nil, reason: "checksum mismatch (stored \(hex(stored)), computed \(hex(actual)))")
        }
        let lsn = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: recordLSNOffset, as: UInt64.self))
        let opByte = raw.load(fromByteOffset: recordOpOffset, as: UInt8.self)
        guard let op = WALOp(rawValue: opByte) else {
            return .corrupt(lsn: lsn, reason: "unknown op \(opByte)")
        }
        let keyCount = Int(
            UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: recordKeyLengthOffset, as: UInt32.self)))
        let valueCount = Int(
            UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: recordValueLengthOffset, as: UInt32.self))
        )
        guard keyCount + valueCount == length - fixedPayloadSize else {
            return .corrupt(
                lsn: lsn,
                reason: "key length \(keyCount) and value length \(valueCount) do not fill the \(length)-byte payload"
            )
        }
        if op == .epoch, keyCount != 0 || valueCount != epochValueSize {
            return .corrupt(
                lsn: lsn,
                reason: "an epoch marker has key length \(keyCount) and value length \(valueCount) (0 and 8 expected)")
        }
        let valueOffset = recordKeyOffset + keyCount
        let record = WALRecord(
            lsn: lsn,
            timestampMs: Int64(littleEndian: raw.loadUnaligned(fromByteOffset: recordTimestampOffset, as: Int64.self)),
            op: op,
            expiresAtMs: Int64(littleEndian: raw.loadUnaligned(fromByteOffset: recordExpiresAtOffset, as: Int64.self)),
            key: Array(UnsafeRawBufferPointer(rebasing: raw[recordKeyOffset..<valueOffset])),
            value: Array(UnsafeRawBufferPointer(rebasing: raw[valueOffset..<size]))
        )
        return .record(record, size: size)
    }

    static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "0x" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits
    }
}
