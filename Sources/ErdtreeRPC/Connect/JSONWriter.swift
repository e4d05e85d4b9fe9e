/// Writing JSON string literals (RFC 8259 §7).
///
/// `package`: Connect's error bodies and ErdtreeProtobuf's JSON mapping write strings the
/// same way.
package enum JSONWriter {
    /// Appends UTF-8 `bytes` as a JSON string literal. Printable ASCII, the common case, is
    /// copied as it is; anything else goes through `String` (malformed UTF-8 is repaired to
    /// U+FFFD, so the output stays valid JSON).
    package static func appendString(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        let plain = bytes.allSatisfy { $0 >= 0x20 && $0 < 0x80 && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }
        guard plain else { return appendString(String(decoding: bytes, as: UTF8.self), to: &out) }
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: bytes)
        out.append(UInt8(ascii: "\""))
    }

    /// Appends `text` as a JSON string literal (quotes, escapes; non-ASCII kept as UTF-8).
    package static func appendString(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30, hex[Int(byte >> 4)], hex[Int(byte & 0xF)]])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
