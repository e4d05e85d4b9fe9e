import Testing

import ErdtreeStorage

@Suite struct StoreKeyTests {
    @Test func keysWithTheSameBytesAreEqualAndHashAlike() {
        let fromString = StoreKey("user:42")
        let fromBytes = StoreKey(Array("user:42".utf8))
        #expect(fromString == fromBytes)
        #expect(fromString.hashValue == fromBytes.hashValue)
        #expect(Set([fromString, fromBytes]).count == 1)
    }

    @Test func keysDifferingInOneByteAreDifferent() {
        #expect(StoreKey([0x61, 0x00]) != StoreKey([0x61, 0x01]))
        #expect(StoreKey([0x61]) != StoreKey([0x61, 0x00]))
    }

    @Test func bufferInitializerCopiesTheBytes() {
        var source: [UInt8] = [1, 2, 3]
        let key = source.withUnsafeBytes { StoreKey($0) }
        source[0] = 9
        #expect(key.bytes == [1, 2, 3])
        #expect(key.withUnsafeBytes { Array($0) } == [1, 2, 3])
    }

    @Test func descriptionQuotesUTF8AndHexDumpsBinary() {
        #expect(StoreKey("naïve").description == "\"naïve\"")
        #expect(StoreKey([0x00, 0xff, 0x10]).description == "0x00ff10")
        #expect(StoreKey([0xc3, 0x28]).description == "0xc328")
    }
}
