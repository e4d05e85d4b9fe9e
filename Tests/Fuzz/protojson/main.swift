// Decodes a JSON document as one of the api/ messages (the first byte picks which) and, where that
// succeeds, requires the round trip to hold: the binary message encodes to JSON, and that JSON
// decodes to the same binary message.
import FuzzSupport

@testable import ErdtreeProtobuf

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let type = input.takeChoice(of: messageTypes)
    guard let binary = try? ProtoJSON.decode(Array(input.takeRest()), as: type) else { return 0 }
    let name = ProtoJSON.name(of: type)
    let json: [UInt8]
    do {
        json = try binary.withUnsafeBytes { try ProtoJSON.encode($0, as: type) }
    } catch {
        fatalError("\(name): the binary message a document decoded to does not encode: \(error) \(binary)")
    }
    let again: [UInt8]
    do {
        again = try ProtoJSON.decode(json, as: type)
    } catch {
        fatalError("\(name): our own JSON does not decode: \(error) \(String(decoding: json, as: UTF8.self))")
    }
    fuzzCheck(again == binary, "\(name): \(String(decoding: json, as: UTF8.self)) decodes to \(again), not \(binary)")
    return 0
}

// Every request and response type a server or client of ours transcodes, in the table's order
// (tests/fuzz/capture_corpus.py numbers the seeds' first byte by it).
// Immutable C descriptors, read from the one thread libFuzzer runs inputs on.
nonisolated(unsafe) let messageTypes = MethodTable.embedded.entries.flatMap {
    [$0.transcoder.input, $0.transcoder.output]
}

runFuzzer(fuzzOne)
