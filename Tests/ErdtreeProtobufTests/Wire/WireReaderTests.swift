import Testing

@testable import ErdtreeProtobuf

/// The one wire reader, on hand-made encodings: what it reads and where it says bytes are bad.
@Suite struct WireReaderTests {
    @Test func everyWireTypeIsReadWithItsNumberAndOffset() throws {
        let wire: [UInt8] =
            [0x08, 0x96, 0x01]  // 1: varint 150
            + [0x11, 1, 0, 0, 0, 0, 0, 0, 0x80]  // 2: fixed64
            + [0x1A, 0x02, 0x68, 0x69]  // 3: "hi"
            + [0x25, 0x01, 0x02, 0x03, 0x04]  // 4: fixed32
        #expect(
            try fields(wire) == [
                WireField(number: 1, offset: 0, value: .varint(150)),
                WireField(number: 2, offset: 3, value: .fixed64(0x8000_0000_0000_0001)),
                WireField(number: 3, offset: 12, value: .lengthDelimited(14..<16)),
                WireField(number: 4, offset: 16, value: .fixed32(0x0403_0201)),
            ])
    }

    @Test func aTenByteVarintIsReadAndAnElevenByteOneIsRefusedAtItsStart() throws {
        let tenBytes: [UInt8] = Array(repeating: 0xFF, count: 9) + [0x01]
        #expect(try fields([0x08] + tenBytes) == [WireField(number: 1, offset: 0, value: .varint(.max))])
        let elevenBytes: [UInt8] = Array(repeating: 0xFF, count: 10) + [0x01]
        #expect(throws: WireError(offset: 1, reason: .varintTooLong)) { try fields([0x08] + elevenBytes) }
    }

    @Test func aVarintCutOffByTheEndOfItsMessageIsRefused() {
        #expect(throws: WireError(offset: 1, reason: .varintPastEnd)) { try fields([0x08, 0x80]) }
        // The end of a reader's range, not of the buffer, is the message's end.
        #expect(throws: WireError(offset: 1, reason: .varintPastEnd)) { try fields([0x08, 0x80, 0x01], range: 0..<2) }
    }

    @Test func aLengthPastTheEndIsRefusedSayingWhatIsLeft() {
        #expect(throws: WireError(offset: 1, reason: .lengthPastEnd(length: 5, remaining: 1))) {
            try fields([0x0A, 0x05, 0x61])
        }
        #expect(throws: WireError(offset: 1, reason: .fixedPastEnd)) { try fields([0x09, 0x01]) }
        #expect(throws: WireError(offset: 1, reason: .fixedPastEnd)) { try fields([0x0D, 0x01, 0x02, 0x03]) }
    }

    @Test func fieldNumberZeroTooLargeNumbersAndUnknownWireTypesAreRefused() {
        #expect(throws: WireError(offset: 0, reason: .fieldNumberZero)) { try fields([0x00, 0x01]) }
        // Tag of field 2^29 (one past the largest), wire type 0: the varint of 2^32.
        #expect(throws: WireError(offset: 0, reason: .fieldNumberTooLarge(1 << 29))) {
            try fields([0x80, 0x80, 0x80, 0x80, 0x10, 0x01])
        }
        #expect(throws: WireError(offset: 2, reason: .unknownWireType(6))) { try fields([0x08, 0x01, 0x0E]) }
        #expect(
            WireError(offset: 0, reason: .fieldNumberZero).description == "malformed protobuf at byte 0: field number 0"
        )
    }

    @Test func aGroupIsSteppedOverAsOneFieldNestedGroupsIncluded() throws {
        let wire: [UInt8] =
            [0x0B]  // 1: start group
            + [0x10, 0x05, 0x1B, 0x1C]  // 2: varint; 3: an empty nested group
            + [0x0C]  // 1: end group
            + [0x20, 0x01]  // 4: varint
        #expect(
            try fields(wire) == [
                WireField(number: 1, offset: 0, value: .group(1..<5)),
                WireField(number: 4, offset: 6, value: .varint(1)),
            ])
    }

    @Test func unbalancedOrTooDeepGroupsAreRefused() {
        #expect(throws: WireError(offset: 1, reason: .groupNotClosed(1))) { try fields([0x0B]) }
        #expect(throws: WireError(offset: 1, reason: .groupClosedAs(group: 1, closing: 2))) {
            try fields([0x0B, 0x14])
        }
        #expect(throws: WireError(offset: 0, reason: .groupEndWithoutStart(1))) { try fields([0x0C]) }
        let deep = [UInt8](repeating: 0x0B, count: WireReader.maxGroupDepth + 1)
        #expect(throws: WireError(offset: WireReader.maxGroupDepth + 1, reason: .groupsTooDeep(limit: 64))) {
            try fields(deep)
        }
    }

    @Test func aNestedReaderReportsOffsetsInTheWholeBuffer() throws {
        // Field 1 holds a message whose varint is cut off by the end of field 1.
        let wire: [UInt8] = [0x0A, 0x02, 0x08, 0x80, 0x10, 0x01]
        let outer = try fields(wire)
        guard case .lengthDelimited(let nested) = outer.first?.value else {
            Issue.record("field 1 is not length-delimited: \(outer)")
            return
        }
        #expect(nested == 2..<4)
        #expect(throws: WireError(offset: 3, reason: .varintPastEnd)) { try fields(wire, range: nested) }
    }

    @Test func packedElementsAreReadByTheirWireType() throws {
        let varints: [UInt8] = [0x01, 0x96, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]
        #expect(try elements(varints, .varint) == [.varint(1), .varint(150), .varint(0xFFFF_FFFF)])
        #expect(try elements([1, 0, 0, 0, 2, 0, 0, 0], .fixed32) == [.fixed32(1), .fixed32(2)])
        #expect(try elements([7, 0, 0, 0, 0, 0, 0, 0], .fixed64) == [.fixed64(7)])
        #expect(throws: WireError(offset: 4, reason: .fixedPastEnd)) { try elements([1, 0, 0, 0, 2], .fixed32) }
    }

    // MARK: Helpers

    private func fields(_ bytes: [UInt8], range: Range<Int>? = nil) throws(WireError) -> [WireField] {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) in
                var reader = WireReader(buffer, range: range)
                var fields: [WireField] = []
                while let field = try reader.next() { fields.append(field) }
                return fields
            }
        }.get()
    }

    private func elements(_ bytes: [UInt8], _ wireType: WireReader.WireType) throws(WireError) -> [WireField.Value] {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(WireError) in
                var reader = WireReader(buffer)
                var values: [WireField.Value] = []
                while let value = try reader.element(wireType) { values.append(value) }
                return values
            }
        }.get()
    }
}
