// The Connect GET query parser, two ways (the first byte's low bit picks): an arbitrary query, whose
// message is inflated as the call would be when it names gzip; or a query built from the input the
// way connect clients build one, which must parse back to exactly the message, codec and compression.
import FuzzSupport
import NIOCore

@testable import ErdtreeRPC

// The server's default message limit, and a small one the mutator can cross.
let limits = [64, 4 << 20]

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.takeByte()
    if options & 1 == 0 {
        parseArbitrary(input.takeRest(), limit: limits[Int(options >> 1) % limits.count])
    } else {
        parseBuilt(message: Array(input.takeRest()), options: options >> 1)
    }
    return 0
}

func parseArbitrary(_ query: ArraySlice<UInt8>, limit: Int) {
    guard case .success(let get) = ConnectGet.parse(query: Substring(decoding: query, as: UTF8.self)) else { return }
    if get.compression?.lowercased() == "gzip" {
        if case .success(let inflated) = Result(catching: { () throws(RPCStatus) in
            try Gzip.decompress(ByteBuffer(bytes: get.body), limit: limit, allocator: ByteBufferAllocator())
        }) {
            fuzzCheck(inflated.readableBytes <= limit, "inflated to \(inflated.readableBytes) bytes, limit \(limit)")
        }
    }
}

/// Builds the query as connect-go and connect-es do (message last or not, base64 URL-safe without
/// padding or percent-encoded) and requires it to parse back.
func parseBuilt(message: [UInt8], options: UInt8) {
    let base64 = options & 1 != 0
    let codec: ConnectProtocol.Codec = options & 2 != 0 ? .json : .proto
    let compression: String? = options & 4 != 0 ? "gzip" : nil
    var encoded = base64 ? Base64.encode(message) : percentEncoded(message)
    if base64 {
        encoded = String(encoded.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
        if options & 8 != 0 { encoded.removeAll { $0 == "=" } }
    }
    var parameters = ["encoding=\(codec == .json ? "json" : "proto")", "message=\(encoded)"]
    if base64 { parameters.append("base64=1") }
    if options & 16 != 0 { parameters.append("connect=v1") }
    if let compression { parameters.append("compression=\(compression)") }
    if options & 32 != 0 { parameters.reverse() }
    let query = parameters.joined(separator: "&")
    switch ConnectGet.parse(query: Substring(query)) {
    case .success(let get):
        fuzzCheck(get.body == message, "\(query) parsed to the message \(get.body), not \(message)")
        fuzzCheck(get.codec == codec && get.compression == compression, "\(query) parsed to \(get)")
    case .failure(let status):
        fatalError("a client's query \(query) was refused: \(status)")
    }
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
func percentEncoded(_ bytes: [UInt8]) -> String {
    let hex = Array("0123456789ABCDEF".utf8)
    var out: [UInt8] = []
    for byte in bytes {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            out.append(byte)
        default: out += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 15)]]
        }
    }
    return String(decoding: out, as: UTF8.self)
}

runFuzzer(fuzzOne)
