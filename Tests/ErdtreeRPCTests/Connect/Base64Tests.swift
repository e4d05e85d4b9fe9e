import Testing

@testable import ErdtreeRPC

/// RFC 4648 base64 as Connect, the h2c upgrade and the JSON mapping use it.
@Suite struct Base64Tests {
    @Test func base64RoundTripsEveryLength() {
        for count in 0..<10 {
            let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 200) }
            #expect(Base64.decode(Base64.encode(bytes)) == bytes, "\(count) bytes")
        }
        // RFC 4648 §10's vectors.
        let vectors = [
            "": "", "f": "Zg==", "fo": "Zm8=", "foo": "Zm9v", "foob": "Zm9vYg==", "fooba": "Zm9vYmE=",
            "foobar": "Zm9vYmFy",
        ]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(Array(plain.utf8)) == encoded)
        }
        #expect(Base64.decode("a") == nil, "one sextet cannot end a quantum")
        #expect(Base64.decode("ab=c") == nil, "padding only at the end")
    }
}
