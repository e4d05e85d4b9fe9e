import ErdtreeProto
import Testing

@testable import ErdtreeProtobuf

/// The reflection index over the descriptor set really embedded in
/// ErdtreeProto: what `grpcurl list` and `grpcurl describe` would get.
@Suite struct DescriptorIndexTests {
    let index = DescriptorIndex.embedded

    @Test func listsEveryServedService() {
        #expect(
            Set(index.serviceNames) == [
                "erdtree.v1.KVStore",
                "erdtree.v1.Replication",
                "erdtree.v1.Admin",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ]
        )
        #expect(index.serviceNames.count == 6)
    }

    @Test func messageSymbolResolvesToItsFile() throws {
        let files = try #require(index.fileContainingSymbol("erdtree.v1.GetRequest"))
        #expect(files.count == 1, "kvstore.proto imports nothing")
        let file = try FileSummary(files[0])
        #expect(file.name == "erdtree/v1/kvstore.proto")
        #expect(file.package == "erdtree.v1")
        #expect(file.messageNames.contains("GetRequest"))
        #expect(file.serviceNames == ["KVStore", "Replication", "Admin"])
    }

    @Test func serviceMethodEnumAndNestedSymbolsResolve() throws {
        let kvstore = try #require(index.fileByFilename("erdtree/v1/kvstore.proto"))
        for symbol in [
            "erdtree.v1.KVStore", "erdtree.v1.KVStore.Get", "erdtree.v1.Admin.RemoveSlave",
            "erdtree.v1.Replication.Replicate", "erdtree.v1.Op", "erdtree.v1.OP_SET",
            "erdtree.v1.GetRequest.key", "erdtree.v1.ReplicateRequest.kind",
        ] {
            #expect(index.fileContainingSymbol(symbol) == kvstore, "\(symbol)")
        }

        let health = try #require(index.fileContainingSymbol("grpc.health.v1.HealthCheckResponse.ServingStatus"))
        #expect(try FileSummary(health[0]).name == "grpc/health/v1/health.proto")
        #expect(index.fileContainingSymbol("grpc.health.v1.Health.Watch") == health)

        let v1alpha = try #require(index.fileContainingSymbol("grpc.reflection.v1alpha.ServerReflection"))
        #expect(try FileSummary(v1alpha[0]).name == "grpc/reflection/v1alpha/reflection.proto")
    }

    @Test func unknownNamesAreNil() {
        #expect(index.fileContainingSymbol("erdtree.v1.NoSuchMessage") == nil)
        #expect(index.fileContainingSymbol("erdtree.v1.KVStore.NoSuchMethod") == nil)
        #expect(index.fileContainingSymbol("GetRequest") == nil, "names must be fully qualified")
        #expect(index.fileContainingSymbol("") == nil)
        #expect(index.fileByFilename("kvstore.proto") == nil)
        #expect(index.fileContainingExtension(extendee: "erdtree.v1.GetRequest", number: 100) == nil)
        #expect(index.extensionNumbers(ofType: "erdtree.v1.NoSuchMessage") == nil)
    }

    @Test func messagesWithoutExtensionsHaveNoExtensionNumbers() {
        #expect(index.extensionNumbers(ofType: "erdtree.v1.Entry") == [])
        #expect(index.extensionNumbers(ofType: "erdtree.v1.KVStore") == nil, "a service is not a message")
    }

    @Test func servedFilesAreTheEmbeddedBytes() throws {
        let embedded = [UInt8](
            UnsafeRawBufferPointer(start: erdtree_descriptor_set_bytes(), count: erdtree_descriptor_set_len)
        )
        let reparsed = try DescriptorIndex(descriptorSet: embedded)
        #expect(reparsed.serviceNames == index.serviceNames)
        let file = try #require(index.fileByFilename("erdtree/v1/kvstore.proto"))[0]
        #expect(embedded.firstRange(of: file) != nil, "a served file is a verbatim slice of the set")
    }

    @Test func answersPutTheFileFirstThenEachImportOnce() throws {
        // c imports b and a; b imports a.
        let set = fileDescriptorSet([
            fileDescriptor(name: "a.proto", package: "p", messages: ["A"]),
            fileDescriptor(name: "b.proto", package: "p", dependencies: ["a.proto"], messages: ["B"]),
            fileDescriptor(name: "c.proto", package: "p", dependencies: ["b.proto", "a.proto"], messages: ["C"]),
        ])
        let index = try DescriptorIndex(descriptorSet: set)
        let names = try #require(index.fileContainingSymbol("p.C")).map { try FileSummary($0).name }
        #expect(names == ["c.proto", "b.proto", "a.proto"])
        #expect(try #require(index.fileByFilename("a.proto")).count == 1)
    }

    @Test func extensionsAreFoundByExtendeeAndNumber() throws {
        // b.proto: `extend p.A { string tag = 100; }`
        let extensionField =
            lengthDelimited(1, Array("tag".utf8)) + lengthDelimited(2, Array(".p.A".utf8)) + [3 << 3, 100]
        let set = fileDescriptorSet([
            fileDescriptor(name: "a.proto", package: "p", messages: ["A"]),
            fileDescriptor(name: "b.proto", package: "p", dependencies: ["a.proto"], messages: [])
                + lengthDelimited(7, extensionField),
        ])
        let index = try DescriptorIndex(descriptorSet: set)
        #expect(index.extensionNumbers(ofType: "p.A") == [100])
        let files = try #require(index.fileContainingExtension(extendee: "p.A", number: 100))
        #expect(try files.map { try FileSummary($0).name } == ["b.proto", "a.proto"])
        #expect(index.fileContainingSymbol("p.tag") == files)
        #expect(index.fileContainingExtension(extendee: "p.A", number: 101) == nil)
    }

    @Test func setMissingAnImportIsRejected() {
        let set = fileDescriptorSet([
            fileDescriptor(name: "b.proto", package: "p", dependencies: ["a.proto"], messages: ["B"])
        ])
        #expect(throws: DescriptorSetError.missingDependency(file: "b.proto", dependency: "a.proto")) {
            try DescriptorIndex(descriptorSet: set)
        }
    }

    @Test func truncatedSetIsRejectedWithItsOffset() throws {
        let embedded = [UInt8](
            UnsafeRawBufferPointer(start: erdtree_descriptor_set_bytes(), count: erdtree_descriptor_set_len)
        )
        let error = try #require(throws: DescriptorSetError.self) {
            try DescriptorIndex(descriptorSet: Array(embedded.prefix(100)))
        }
        guard case .malformed(let offset, _) = error else {
            Issue.record("expected .malformed, got \(error)")
            return
        }
        #expect(offset == 1, "the first file's length (after its one-byte key) runs past the end")
        #expect(error.description.contains("byte 1"))
    }

    /// The messages reflection describes are the ones the generated C code
    /// encodes: a GetRequest survives protobuf-c's pack and unpack.
    @Test func generatedCodeRoundTripsAGetRequest() throws {
        #expect(index.fileContainingSymbol("erdtree.v1.GetRequest") != nil)
        var request = Erdtree__V1__GetRequest()
        erdtree__v1__get_request__init(&request)
        var key = Array("user:42".utf8CString)
        let packed = key.withUnsafeMutableBufferPointer { keyBytes in
            request.key = keyBytes.baseAddress
            request.min_lsn = 7
            var bytes = [UInt8](repeating: 0, count: erdtree__v1__get_request__get_packed_size(&request))
            #expect(erdtree__v1__get_request__pack(&request, &bytes) == bytes.count)
            return bytes
        }
        #expect(packed == [0x0a, 7] + Array("user:42".utf8) + [0x10, 7])

        let decoded = try #require(erdtree__v1__get_request__unpack(nil, packed.count, packed))
        defer { erdtree__v1__get_request__free_unpacked(decoded, nil) }
        #expect(String(cString: decoded.pointee.key) == "user:42")
        #expect(decoded.pointee.min_lsn == 7)
    }
}

// MARK: - Support

/// The parts of a serialized FileDescriptorProto the tests check, read with
/// ErdtreeProtobuf's own wire reader.
private struct FileSummary {
    var name = ""
    var package = ""
    var messageNames: [String] = []
    var serviceNames: [String] = []

    init(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { buffer in
            var reader = WireReader(buffer)
            while let field = try reader.next() {
                switch (field.number, field.value) {
                case (1, .lengthDelimited(let value)): name = reader.string(value)
                case (2, .lengthDelimited(let value)): package = reader.string(value)
                case (4, .lengthDelimited(let value)): messageNames.append(try Self.name(buffer, value))
                case (6, .lengthDelimited(let value)): serviceNames.append(try Self.name(buffer, value))
                default: break
                }
            }
        }
    }

    private static func name(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) throws -> String {
        var reader = WireReader(buffer, range: range)
        while let field = try reader.next() {
            if field.number == 1, case .lengthDelimited(let value) = field.value { return reader.string(value) }
        }
        return ""
    }
}

private func lengthDelimited(_ fieldNumber: UInt8, _ payload: [UInt8]) -> [UInt8] {
    precondition(payload.count < 128, "test descriptors stay small enough for one-byte lengths")
    return [fieldNumber << 3 | 2, UInt8(payload.count)] + payload
}

private func fileDescriptor(
    name: String,
    package: String,
    dependencies: [String] = [],
    messages: [String]
) -> [UInt8] {
    var bytes = lengthDelimited(1, Array(name.utf8)) + lengthDelimited(2, Array(package.utf8))
    for dependency in dependencies { bytes += lengthDelimited(3, Array(dependency.utf8)) }
    for message in messages { bytes += lengthDelimited(4, lengthDelimited(1, Array(message.utf8))) }
    return bytes
}

private func fileDescriptorSet(_ files: [[UInt8]]) -> [UInt8] {
    files.flatMap { lengthDelimited(1, $0) }
}
