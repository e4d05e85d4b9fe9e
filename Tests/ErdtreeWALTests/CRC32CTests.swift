import Testing

@testable import ErdtreeWAL

/// CRC-32C against published vectors (RFC 3720 appendix B.4 and the usual check value).
@Suite struct CRC32CTests {
    @Test func checkValueOfDigitsMatches() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func rfc3720VectorsMatch() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    @Test func emptyInputIsZero() {
        #expect(CRC32C.checksum([]) == 0)
    }

    @Test func checksumInPiecesEqualsChecksumOfTheWhole() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let whole = CRC32C.checksum(bytes)
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let first = bytes[..<split].withUnsafeBytes { CRC32C.checksum($0) }
            let both = bytes[split...].withUnsafeBytes { CRC32C.checksum($0, continuing: first) }
            #expect(both == whole, "split at \(split)")
        }
    }

    @Test func theInstructionAndTheTableAgree() {
        // Whichever one `checksum` uses here, the other must give the same answer: every length
        // around the 8-byte steps, at every alignment, continuing from a previous result.
        let bytes = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 17) }
        bytes.withUnsafeBytes { all in
            for start in 0..<8 {
                for count in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 150, 291] {
                    let piece = UnsafeRawBufferPointer(rebasing: all[start..<start + count])
                    #expect(CRC32C.checksum(piece) == CRC32C.software(piece), "start \(start), count \(count)")
                    #expect(
                        CRC32C.checksum(piece, continuing: 0x1234_5678)
                            == CRC32C.software(piece, continuing: 0x1234_5678))
                }
            }
        }
    }

    @Test func unalignedStartGivesTheSameChecksum() {
        let bytes = (0..<100).map { UInt8($0) }
        let expected = CRC32C.checksum(Array(bytes[3...]))
        #expect(bytes[3...].withUnsafeBytes { CRC32C.checksum($0) } == expected)
    }
}
