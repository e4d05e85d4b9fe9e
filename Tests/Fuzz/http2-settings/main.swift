// The h2c upgrade's HTTP2-Settings handling: the header's decoding (H2CUpgrade.settings over
// Base64) and nghttp2's taking of the decoded payload (NGHTTP2Session.upgrade), which must refuse
// what is not a whole number of 6-byte settings, or more of them than the session allows. The
// first byte's low bit picks an arbitrary header value, or one a client would send for the payload
// that follows, which must decode back to it.
import FuzzSupport
import NIOCore
import NIOHTTP1

@testable import ErdtreeRPC

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.takeByte()
    let rest = Array(input.takeRest())
    if options & 1 == 0 {
        let value = String(decoding: rest, as: UTF8.self)
        guard let payload = H2CUpgrade.settings(head(settings: value)) else { return 0 }
        upgrade(with: payload, headRequest: options & 2 != 0)
    } else {
        // RFC 7540 §3.2.1: base64url without padding.
        let value = String(Base64.encode(rest).compactMap { $0 == "=" ? nil : $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
        let payload = H2CUpgrade.settings(head(settings: value))
        fuzzCheck(payload == rest, "HTTP2-Settings: \(value) decoded to \(String(describing: payload)), not \(rest)")
        upgrade(with: rest, headRequest: options & 2 != 0)
    }
    return 0
}

func head(settings value: String) -> HTTPRequestHead {
    HTTPRequestHead(
        version: .http1_1, method: .GET, uri: "/",
        headers: ["connection": "Upgrade, HTTP2-Settings", "upgrade": "h2c", "http2-settings": value])
}

/// Starts a server session from the payload, as the server does after its 101, and writes what
/// the session then has to send.
func upgrade(with payload: [UInt8], headRequest: Bool) {
    do {
        let session = try NGHTTP2Session(role: .server)
        do {
            try session.upgrade(settings: payload, headRequest: headRequest)
        } catch {
            // nghttp2 refuses a payload that is not whole settings, and more settings than
            // NGHTTP2Session allows in one frame (64, against SETTINGS floods); it takes the rest.
            fuzzCheck(
                payload.count % 6 != 0 || payload.count / 6 > 64,
                "a payload of \(payload.count / 6) whole settings was refused: \(error)")
            return
        }
        fuzzCheck(payload.count % 6 == 0, "a payload of \(payload.count) bytes, not whole settings, was taken")
        var out = ByteBuffer()
        try session.drainOutput(into: &out)
    } catch {
        fatalError("a server session could not start or send: \(error)")
    }
}

runFuzzer(fuzzOne)
