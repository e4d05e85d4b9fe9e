import Testing

@testable import ErdtreeWAL

/// The byte format on its own: encode, decode, and what each kind of damage decodes as.
@Suite struct RecordFormatTests {
    private func encoded(_ record: WALRecord) -> [UInt8] {
        var buffer: [UInt8] = []
        RecordFormat.appendRecord(
            lsn: record.lsn,
            timestampMs: record.timestampMs,
            op: record.op,
            expiresAtMs: record.expiresAtMs,
            key: record.key,
            value: record.value,
            to: &buffer
        )
        return buffer
    }

    private let sample = WALRecord(
        lsn: 0x0102_0304_0506_0708,
        timestampMs: 1_700_000_000_123,
        op: .set,
        expiresAtMs: -5,
        key: Array("user:42".utf8),
        value: Array("hello, world".utf8)
    )

    /// The two records of the worked example in docs/wal-format.md, byte for byte, so the
    /// document cannot drift from the code.
    @Test func workedExampleOfTheFormatDocumentEncodesAsPrinted() {
        let set = encoded(
            WALRecord(
                lsn: 1, timestampMs: 1_700_000_000_000, op: .set, expiresAtMs: 0, key: Array("user:42".utf8),
                value: Array("hello".utf8)))
        let delete = encoded(
            WALRecord(
                lsn: 2, timestampMs: 1_700_000_000_250, op: .delete, expiresAtMs: 0, key: Array("user:42".utf8),
                value: []))
        let printed: [UInt8] =
            [
                0xd8, 0x79, 0x54, 0x15, 0x2d, 0x00, 0x00, 0x00,
                0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00,
                0x01,
                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x07, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00,
            ] + Array("user:42hello".utf8)
        #expect(set == printed)
        #expect(delete.count == 48)
        #expect(Array(delete.prefix(8)) == [0xde, 0x2b, 0xcd, 0x7a, 0x28, 0x00, 0x00, 0x00])
    }

    /// The epoch marker of docs/wal-format.md ("Epoch markers"), byte for byte.
    @Test func epochMarkerExampleOfTheFormatDocumentEncodesAsPrinted() {
        let marker = encoded(WALRecord.epochMarker(2, lsn: 1001, timestampMs: 1_700_000_000_000))
        let printed: [UInt8] = [
            0x3e, 0x6d, 0x74, 0xdc, 0x29, 0x00, 0x00, 0x00,
            0xe9, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00,
            0x03,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00,
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]
        #expect(marker == printed)
    }

    @Test func recordRoundTrips() throws {
        let bytes = encoded(sample)
        #expect(bytes.count == RecordFormat.recordSize(keyCount: 7, valueCount: 12))
        #expect(bytes.count == 8 + 33 + 7 + 12)
        guard case .record(let decoded, let size) = bytes.withUnsafeBytes({ RecordFormat.decodeRecord($0) }) else {
            Issue.record("did not decode")
            return
        }
        #expect(decoded == sample)
        #expect(size == bytes.count)
    }

    @Test func deleteWithEmptyKeyAndValueRoundTrips() {
        let record = WALRecord(lsn: 1, timestampMs: 0, op: .delete, expiresAtMs: 0, key: [], value: [])
        let bytes = encoded(record)
        guard case .record(let decoded, _) = bytes.withUnsafeBytes({ RecordFormat.decodeRecord($0) }) else {
            Issue.record("did not decode")
            return
        }
        #expect(decoded == record)
    }

    @Test func fieldsSitAtTheDocumentedOffsets() {
        let bytes = encoded(sample)
        #expect(Array(bytes[4..<8]) == [0x34, 0, 0, 0])  // payload length 33 + 7 + 12 = 52
        #expect(Array(bytes[8..<16]) == [8, 7, 6, 5, 4, 3, 2, 1])  // LSN, little-endian
        #expect(bytes[24] == 1)  // op set
        #expect(Array(bytes[33..<37]) == [7, 0, 0, 0])
        #expect(Array(bytes[37..<41]) == [12, 0, 0, 0])
        #expect(Array(bytes[41..<48]) == Array("user:42".utf8))
    }

    @Test func everyTruncationIsIncomplete() {
        let bytes = encoded(sample)
        for length in 0..<bytes.count {
            let result = bytes[..<length].withUnsafeBytes { RecordFormat.decodeRecord($0) }
            guard case .incomplete = result else {
                Issue.record("\(length) bytes decoded as \(result)")
                continue
            }
        }
    }

    @Test func everyFlippedByteAfterTheLengthIsACorruptRecord() {
        let bytes = encoded(sample)
        for offset in [0, 1, 2, 3] + Array(8..<bytes.count) {
            var damaged = bytes
            damaged[offset] ^= 0x20
            let result = damaged.withUnsafeBytes { RecordFormat.decodeRecord($0) }
            guard case .corrupt(_, let reason) = result else {
                Issue.record("flip at \(offset) decoded as \(result)")
                continue
            }
            #expect(reason.contains("checksum mismatch"))
        }
    }

    @Test func lengthBeyondTheLimitIsCorruptNotIncomplete() {
        var bytes = encoded(sample)
        bytes[7] = 0x10  // length ≥ 256 MiB
        guard case .corrupt(let lsn, let reason) = bytes.withUnsafeBytes({ RecordFormat.decodeRecord($0) }) else {
            Issue.record("accepted a length over the limit")
            return
        }
        #expect(lsn == nil)
        #expect(reason.contains("outside 33...67108864"))
    }

    @Test func headerRoundTripsAndNamesItsProblems() throws {
        let id = (0..<16).map { UInt8($0 * 3) }
        let bytes = RecordFormat.encodeHeader(.init(firstLSN: 77, replicationID: id))
        #expect(bytes.count == 40)
        #expect(Array(bytes[0..<8]) == Array("ERDTWAL1".utf8))
        let decoded = try bytes.withUnsafeBytes { try RecordFormat.decodeHeader($0).get() }
        #expect(decoded == .init(firstLSN: 77, replicationID: id))

        var badMagic = bytes
        badMagic[0] = 0
        #expect(throws: RecordFormat.HeaderProblem.self) {
            try badMagic.withUnsafeBytes { try RecordFormat.decodeHeader($0).get() }
        }
        var badCRC = bytes
        badCRC[15] ^= 1
        #expect(throws: RecordFormat.HeaderProblem.self) {
            try badCRC.withUnsafeBytes { try RecordFormat.decodeHeader($0).get() }
        }
        #expect(throws: RecordFormat.HeaderProblem.self) {
            try bytes[..<39].withUnsafeBytes { try RecordFormat.decodeHeader($0).get() }
        }
    }

    @Test func segmentNamesArePaddedFirstLSNs() {
        #expect(RecordFormat.segmentName(firstLSN: 1) == "00000000000000000001.log")
        #expect(RecordFormat.segmentName(firstLSN: 52_812) == "00000000000000052812.log")
        #expect(RecordFormat.firstLSN(segmentName: "00000000000000052812.log") == 52_812)
        #expect(RecordFormat.firstLSN(segmentName: "00000000000000052812.log.broken") == nil)
        #expect(RecordFormat.firstLSN(segmentName: "0000000000000005281x.log") == nil)
        #expect(RecordFormat.firstLSN(segmentName: "52812.log") == nil)
        #expect(RecordFormat.firstLSN(segmentName: RecordFormat.segmentName(firstLSN: .max)) == .max)
    }
}
