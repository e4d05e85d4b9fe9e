import NIOCore
import Testing

@testable import ErdtreeRPC

/// How the first bytes of a connection pick its protocol.
@Suite struct ProtocolSnifferTests {
    private func detect(_ text: String) -> ProtocolSniffer.Detected? {
        ProtocolSniffer.detect(ByteBuffer(string: text))
    }

    @Test func theWholePrefaceMeansHTTP2() {
        #expect(detect("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == .http2)
        #expect(detect("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\u{12}\u{4}") == .http2, "frames may follow")
    }

    @Test func aPrefixOfThePrefaceWaitsForMore() {
        #expect(detect("") == nil)
        #expect(detect("PRI * HTTP/2") == nil)
    }

    @Test func anythingElseIsHTTP1AtTheFirstDifferentByte() {
        #expect(detect("GET / HTTP/1.1\r\n") == .http1)
        #expect(detect("P") == nil)
        #expect(detect("PO") == .http1, "POST differs from PRI at its second byte")
        #expect(detect("PRI * HTTP/1.1\r\n") == .http1)
    }
}
