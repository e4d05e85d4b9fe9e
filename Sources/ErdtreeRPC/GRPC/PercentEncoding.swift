/// `grpc-message` encoding of gRPC PROTOCOL-HTTP2: bytes outside printable ASCII, and
/// `%` itself, become `%XX` so any UTF-8 message survives an HTTP/2 header.
enum PercentEncoding {
    static func encode(_ message: String) -> String {
        let utf8 = message.utf8
        if utf8.allSatisfy({ $0 >= 0x20 && $0 <= 0x7E && $0 != 0x25 }) { return message }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count * 3)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in utf8 {
            if byte >= 0x20 && byte <= 0x7E && byte != 0x25 {
                out.append(byte)
            } else {
                out.append(0x25)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes leniently, as the spec asks: a malformed `%` sequence stays as it is.
    static func decode(_ encoded: String) -> String {
        guard encoded.utf8.contains(0x25) else { return encoded }
        let bytes = Array(encoded.utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x25, i + 2 < bytes.count,
                let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x41 + 10
        case 0x61...0x66: return c - 0x61 + 10
        default: return nil
        }
    }
}
