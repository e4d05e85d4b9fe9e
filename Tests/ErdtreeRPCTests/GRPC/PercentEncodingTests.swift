import Testing

@testable import ErdtreeRPC

/// `grpc-message` encoding (gRPC PROTOCOL-HTTP2 "Status-Message"): printable ASCII but `%`
/// passes through, every other byte of the UTF-8 becomes `%XX`, and the decoder is lenient.
@Suite struct PercentEncodingTests {
    @Test func printableASCIIPassesThrough() {
        let message = "key is 4097 bytes; the limit is 4096 bytes (max_key_bytes) ~!@#$^&*()_+{}|:\"<>?`-=[]\\;',./"
        #expect(PercentEncoding.encode(message) == message)
        #expect(PercentEncoding.decode(message) == message)
    }

    @Test func everyPrintableASCIIByteButPercentIsKept() {
        let printable = String(decoding: (0x20...0x7E).filter { $0 != 0x25 }, as: UTF8.self)
        #expect(PercentEncoding.encode(printable) == printable)
    }

    @Test func percentSignIsEncoded() {
        #expect(PercentEncoding.encode("100%") == "100%25")
        #expect(PercentEncoding.encode("%41") == "%2541")
    }

    @Test func nonASCIIIsEncodedAsUTF8BytesInUpperCaseHex() {
        #expect(PercentEncoding.encode("é") == "%C3%A9")
        #expect(PercentEncoding.encode("key 'ключ' not found") == "key '%D0%BA%D0%BB%D1%8E%D1%87' not found")
        #expect(PercentEncoding.encode("🌳") == "%F0%9F%8C%B3")
    }

    @Test func controlCharactersAndDeleteAreEncoded() {
        #expect(PercentEncoding.encode("a\nb") == "a%0Ab")
        #expect(PercentEncoding.encode("\t\r") == "%09%0D")
        #expect(PercentEncoding.encode("\u{7F}") == "%7F")
        #expect(PercentEncoding.encode("\u{0}") == "%00")
    }

    @Test func encodedOutputIsAValidHeaderValue() {
        let encoded = PercentEncoding.encode("line one\nline two: ✓ 100% 日本語\u{0}")
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
    }

    @Test func decodesUpperAndLowerCaseHex() {
        #expect(PercentEncoding.decode("%C3%A9") == "é")
        #expect(PercentEncoding.decode("%c3%a9") == "é")
        #expect(PercentEncoding.decode("100%25") == "100%")
        #expect(PercentEncoding.decode("%41%42C") == "ABC")
    }

    @Test(arguments: [
        "%",  // lone percent
        "100%",  // percent at the end
        "%4",  // one hex digit
        "ab%4",  // one hex digit at the end
        "%G1",  // not hex
        "%1G",
        "%%",
        "% 41",
        "50%-off",
    ])
    func malformedSequencesAreLeftIntact(encoded: String) {
        #expect(PercentEncoding.decode(encoded) == encoded)
    }

    @Test func malformedSequenceDoesNotSwallowAValidOneAfterIt() {
        #expect(PercentEncoding.decode("%%41") == "%A")
        #expect(PercentEncoding.decode("%G%41") == "%GA")
    }

    @Test func undecodableBytesDoNotCrash() {
        // %FF alone is not UTF-8; the lenient decoder must still give a string back.
        let decoded = PercentEncoding.decode("bad %FF byte")
        #expect(decoded.hasPrefix("bad "))
        #expect(decoded.hasSuffix(" byte"))
    }

    @Test(arguments: [
        "",
        "plain",
        "100% sure",
        "%25 already looks encoded",
        "naïve café",
        "日本語のメッセージ",
        "emoji 🌳🔥👩‍👩‍👧 flags 🇸🇪",
        "combining e\u{301} and a\u{30A}",
        "nul \u{0} and controls \u{1}\u{1F}\u{7F}\u{80}\u{9F}",
        "right-to-left עברית العربية",
        "supplementary \u{10FFFF} \u{1F600}",
        "line\r\nbreaks\ttabs",
    ])
    func arbitraryUnicodeRoundTrips(message: String) {
        let encoded = PercentEncoding.encode(message)
        #expect(encoded.utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E })
        #expect(PercentEncoding.decode(encoded) == message)
        #expect(Array(PercentEncoding.decode(encoded).utf8) == Array(message.utf8))
    }

    @Test func everyScalarOfTheFirstPlanesRoundTrips() {
        // Every scalar up to U+2FFF plus a sample of the rest, in one message.
        var scalars = (0...0x2FFF).compactMap(Unicode.Scalar.init)
        scalars += stride(from: 0x3000, through: 0x10FFFF, by: 4099).compactMap(Unicode.Scalar.init)
        var message = ""
        message.unicodeScalars.append(contentsOf: scalars)
        let encoded = PercentEncoding.encode(message)
        #expect(Array(PercentEncoding.decode(encoded).utf8) == Array(message.utf8))
    }
}
