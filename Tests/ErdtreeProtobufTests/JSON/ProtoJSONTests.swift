import CProtobufC
import ErdtreeProto
import ErdtreeRPC
import Testing

@testable import ErdtreeProtobuf

/// The proto3 JSON mapping over protobuf-c descriptors, checked against messages built and
/// read with protobuf-c's generated code (not with the codec itself).
@Suite struct ProtoJSONTests {
    @Test func aSetRequestEncodesWithCamelCaseNamesBase64BytesAndQuotedInt64() throws {
        var message = Erdtree__V1__SetRequest()
        erdtree__v1__set_request__init(&message)
        let json = try withPacked(&message, key: "user:42", value: [0xFF, 0x00, 0x41], ttlMs: 1500) { bytes in
            try ProtoJSON.encode(bytes, as: setRequest)
        }
        #expect(String(decoding: json, as: UTF8.self) == #"{"key":"user:42","value":"/wBB","ttlMs":"1500"}"#)
    }

    @Test func defaultsAreLeftOut() throws {
        var message = Erdtree__V1__SetRequest()
        erdtree__v1__set_request__init(&message)
        let json = try withPacked(&message, key: "", value: [], ttlMs: 0) { bytes in
            try ProtoJSON.encode(bytes, as: setRequest)
        }
        #expect(String(decoding: json, as: UTF8.self) == "{}")
    }

    @Test func decodingTakesBothNamesIntegersAsNumbersOrStringsAndEitherBase64() throws {
        for document in [
            #"{"key":"k1","value":"aGk=","ttlMs":"250"}"#,
            #"{"key":"k1","value":"aGk","ttl_ms":250}"#,
            #" { "ttl_ms" : 2.5e2 , "value" : "aGk=" , "key" : "k1" } "#,
        ] {
            let binary = try ProtoJSON.decode(Array(document.utf8), as: setRequest)
            let (key, value, ttl) = try unpackSetRequest(binary)
            #expect(key == "k1", "\(document)")
            #expect(value == Array("hi".utf8), "\(document)")
            #expect(ttl == 250, "\(document)")
        }
        // URL-safe alphabet: "-_" are "+/".
        let urlSafe = try ProtoJSON.decode(
            Array(#"{"value":"-_8"}"#.utf8), as: setRequest)
        #expect(try unpackSetRequest(urlSafe).1 == [0xFB, 0xFF])
    }

    @Test func badDocumentsAreRefusedNamingTheFieldOrThePosition() {
        let cases: [(String, String)] = [
            (#"{"key":"k","colour":"red"}"#, #"erdtree.v1.SetRequest: unknown field "colour""#),
            (#"{"key":7}"#, "erdtree.v1.SetRequest.key: expected a string, got the number 7"),
            (#"{"ttlMs":"soon"}"#, "erdtree.v1.SetRequest.ttl_ms: soon is not an integer in the range of Int64"),
            (#"{"ttlMs":1.5}"#, "erdtree.v1.SetRequest.ttl_ms: 1.5 is not an integer in the range of Int64"),
            (
                #"{"value":"not base64!"}"#,
                "erdtree.v1.SetRequest.value: expected base64 bytes in a string, got a string"
            ),
            (#"{"key":"a","key":"b"}"#, #"erdtree.v1.SetRequest: field "key" is given twice"#),
            (#"{"key":"a\u0000b"}"#, "erdtree.v1.SetRequest.key: a string may not contain U+0000"),
            (#"["key"]"#, "erdtree.v1.SetRequest: expected a JSON object, got an array"),
            (#"{"key":"k",}"#, "malformed JSON at byte 11: expected a member name in double quotes"),
            (#"{"key" "k"}"#, "malformed JSON at byte 7: expected ':'"),
            (#"{"key":"k"} x"#, "malformed JSON at byte 12: unexpected data after the value"),
            ("", "malformed JSON at byte 0: unexpected end of input, a value was expected"),
            (String(repeating: "[", count: 100), "malformed JSON at byte 64: nested deeper than 64 levels"),
            (#"{"key":"\x"}"#, #"malformed JSON at byte 8: invalid escape '\x'"#),
        ]
        for (document, message) in cases {
            #expect(throws: ProtoJSON.Failure(message: message), "\(document)") {
                try ProtoJSON.decode(Array(document.utf8), as: setRequest)
            }
        }
    }

    @Test func oneofsRepeatedMessagesAndEnumsRoundTrip() throws {
        let document = #"""
            {"batch":{"entries":[{"lsn":"1","op":"OP_SET","key":"a","value":"AQ=="},\#
            {"lsn":"2","timestampMs":"-5","op":"OP_DELETE","key":"b"}],"masterLsn":"18446744073709551615"}}
            """#
        let response = replicateResponse
        let binary = try ProtoJSON.decode(Array(document.utf8), as: response)
        // Read back with the generated code.
        let message = try #require(
            binary.withUnsafeBufferPointer { erdtree__v1__replicate_response__unpack(nil, $0.count, $0.baseAddress) })
        defer { erdtree__v1__replicate_response__free_unpacked(message, nil) }
        #expect(message.pointee.kind_case == ERDTREE__V1__REPLICATE_RESPONSE__KIND_BATCH)
        let batch = try #require(message.pointee.batch).pointee
        #expect(batch.master_lsn == UInt64.max)
        #expect(batch.n_entries == 2)
        let second = try #require(batch.entries[1]).pointee
        #expect(second.op == ERDTREE__V1__OP__OP_DELETE)
        #expect(second.timestamp_ms == -5)
        // And back to JSON: the same document, with defaults left out.
        let json = try binary.withUnsafeBytes { try ProtoJSON.encode($0, as: response) }
        #expect(
            String(decoding: json, as: UTF8.self)
                == #"{"batch":{"entries":[{"lsn":"1","op":"OP_SET","key":"a","value":"AQ=="},"#
                + #"{"lsn":"2","timestampMs":"-5","op":"OP_DELETE","key":"b"}],"masterLsn":"18446744073709551615"}}"#)
    }

    /// Encoding reads the wire bytes directly: what a producer other than protobuf-c's packer
    /// may write must still come out right, and malformed bytes must be refused.
    @Test func encodingFollowsTheWireRules() throws {
        func json(_ wire: [UInt8], _ descriptor: ProtoJSON.Descriptor) throws -> String {
            String(decoding: try wire.withUnsafeBytes { try ProtoJSON.encode($0, as: descriptor) }, as: UTF8.self)
        }
        // lsn twice (the last wins), an explicit default timestamp (left out), an unknown field
        // 99 (skipped), a negative int64 as a ten-byte varint.
        #expect(try json([0x08, 0x01, 0x10, 0x00, 0x08, 0x07, 0x98, 0x06, 0x05], entry) == #"{"lsn":"7"}"#)
        let minusFive: [UInt8] = [0x10, 0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        #expect(try json(minusFive, entry) == #"{"timestampMs":"-5"}"#)
        // A repeated message interleaved with another field: one array, in wire order.
        let getUpdates = descriptor(Erdtree__V1__GetUpdatesResponse.self) {
            erdtree__v1__get_updates_response__init($0)
        }
        #expect(
            try json([0x0A, 0x02, 0x08, 0x01, 0x10, 0x05, 0x0A, 0x02, 0x08, 0x02], getUpdates)
                == #"{"entries":[{"lsn":"1"},{"lsn":"2"}],"masterLsn":"5"}"#)
        // Fields out of number order: the same document as in order.
        #expect(try json([0x22, 0x01, 0x6B, 0x08, 0x03], entry) == #"{"lsn":"3","key":"k"}"#)
        // Two members of one oneof: the last one is the oneof's value (heartbeat, field 4,
        // after welcome, field 1); in order on the wire, and out of order.
        #expect(
            try json([0x0A, 0x00, 0x22, 0x02, 0x08, 0x09], replicateResponse) == #"{"heartbeat":{"masterLsn":"9"}}"#)
        #expect(try json([0x22, 0x02, 0x08, 0x09, 0x0A, 0x00], replicateResponse) == #"{"welcome":{}}"#)
        // Strings that need escaping or hold non-ASCII; malformed UTF-8 repaired, not copied.
        #expect(try json([0x22, 0x04, 0x61, 0x22, 0xC3, 0xA9], entry) == #"{"key":"a\"é"}"#)
        #expect(try json([0x22, 0x02, 0x61, 0xFF], entry) == "{\"key\":\"a\u{FFFD}\"}")
        let malformed: [(String, [UInt8])] = [
            ("a length past the end", [0x22, 0x05, 0x61]),
            ("a group (wire type 3)", [0x0B]),
            ("a varint longer than ten bytes", [0x08] + Array(repeating: 0xFF, count: 11)),
            ("a truncated fixed64", [0x09, 0x01]),
            ("field number 0", [0x00, 0x01]),
            ("a string field sent as a varint", [0x20, 0x01]),
        ]
        for (what, wire) in malformed {
            #expect(
                throws: ProtoJSON.Failure(
                    message: "cannot encode erdtree.v1.Entry as JSON: not a valid binary message"),
                "\(what)"
            ) { try json(wire, entry) }
        }
    }

    @Test func twoMembersOfOneOneofAreRefused() {
        #expect(throws: ProtoJSON.Failure.self) {
            try ProtoJSON.decode(
                Array(#"{"batch":{},"heartbeat":{}}"#.utf8),
                as: replicateResponse)
        }
    }

    @Test func enumsAreReadByNameOrNumberAndUnknownNamesAreRefused() throws {
        let byNumber = try ProtoJSON.decode(Array(#"{"op":2}"#.utf8), as: entry)
        let json = try byNumber.withUnsafeBytes { try ProtoJSON.encode($0, as: entry) }
        #expect(String(decoding: json, as: UTF8.self) == #"{"op":"OP_DELETE"}"#)
        #expect(throws: ProtoJSON.Failure.self) { try ProtoJSON.decode(Array(#"{"op":"OP_MAYBE"}"#.utf8), as: entry) }
    }

    @Test func stringsAreEscapedAndUnescaped() throws {
        let text = "quote\" backslash\\ newline\n tab\t bell\u{07} é 🌳"
        var out: [UInt8] = []
        JSONWriter.appendString(text, to: &out)
        #expect(try JSONParser.parse(out) == .string(text))
        #expect(try JSONParser.parse(Array(#""\ud83c\udf33 \u00e9""#.utf8)) == .string("🌳 é"))
        // Plain ASCII is read without the byte-by-byte path; what stops it (an escape, non-ASCII,
        // a control character, bad UTF-8) is still handled, at any position.
        #expect(try JSONParser.parse(Array(#""plain-ascii key""#.utf8)) == .string("plain-ascii key"))
        #expect(try JSONParser.parse(Array(#""ab\ncd é""#.utf8)) == .string("ab\ncd é"))
        #expect(throws: JSONSyntaxError(offset: 3, reason: "control character in a string (escape it)")) {
            try JSONParser.parse([0x22, 0x61, 0x62, 0x01, 0x22])
        }
        #expect(throws: JSONSyntaxError(offset: 4, reason: "string is not valid UTF-8")) {
            try JSONParser.parse([0x22, 0x61, 0xFF, 0x22])
        }
        #expect(throws: JSONSyntaxError(offset: 4, reason: "unterminated string")) {
            try JSONParser.parse(Array(#""abc"#.utf8))
        }
    }

    // MARK: Helpers

    /// A generated message type's descriptor (a C global Swift cannot take the address of):
    /// the one an initialized message points to.
    private func descriptor<Message>(_ type: Message.Type, _ initialize: (UnsafeMutablePointer<Message>) -> Void)
        -> ProtoJSON.Descriptor
    {
        let message = UnsafeMutablePointer<Message>.allocate(capacity: 1)
        defer { message.deallocate() }
        initialize(message)
        return UnsafeRawPointer(message).load(as: ProtobufCMessage.self).descriptor
    }

    private var setRequest: ProtoJSON.Descriptor {
        descriptor(Erdtree__V1__SetRequest.self) { erdtree__v1__set_request__init($0) }
    }
    private var replicateResponse: ProtoJSON.Descriptor {
        descriptor(Erdtree__V1__ReplicateResponse.self) { erdtree__v1__replicate_response__init($0) }
    }
    private var entry: ProtoJSON.Descriptor {
        descriptor(Erdtree__V1__Entry.self) { erdtree__v1__entry__init($0) }
    }

    private func withPacked<R>(
        _ message: inout Erdtree__V1__SetRequest, key: String, value: [UInt8], ttlMs: Int64,
        _ body: (UnsafeRawBufferPointer) throws -> R
    ) rethrows -> R {
        try key.withCString { keyPointer in
            var bytes = value
            return try bytes.withUnsafeMutableBufferPointer { valuePointer in
                message.key = UnsafeMutablePointer(mutating: keyPointer)
                message.value = ProtobufCBinaryData(len: valuePointer.count, data: valuePointer.baseAddress)
                message.ttl_ms = ttlMs
                let size = erdtree__v1__set_request__get_packed_size(&message)
                var packed = [UInt8](repeating: 0, count: size)
                _ = packed.withUnsafeMutableBufferPointer { erdtree__v1__set_request__pack(&message, $0.baseAddress) }
                return try packed.withUnsafeBytes(body)
            }
        }
    }

    private func unpackSetRequest(_ binary: [UInt8]) throws -> (String, [UInt8], Int64) {
        let message = try #require(
            binary.withUnsafeBufferPointer { erdtree__v1__set_request__unpack(nil, $0.count, $0.baseAddress) })
        defer { erdtree__v1__set_request__free_unpacked(message, nil) }
        let value = message.pointee.value
        return (
            String(cString: message.pointee.key),
            value.data.map { Array(UnsafeBufferPointer(start: $0, count: value.len)) } ?? [], message.pointee.ttl_ms
        )
    }
}
