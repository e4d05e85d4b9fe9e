import ErdtreeProto
import ErdtreeRPC
import Foundation
import NIOCore
import Testing

@testable import ErdtreeProtobuf

/// The per-method table built from the embedded descriptor set and the generated code, checked
/// against the proto source in api/.
@Suite struct MethodTableTests {
    let table = MethodTable.embedded

    @Test func everyMethodOfTheKVStoreProtoIsDescribed() {
        let kvstore = [
            "/erdtree.v1.KVStore/Get", "/erdtree.v1.KVStore/Set", "/erdtree.v1.KVStore/Delete",
            "/erdtree.v1.KVStore/GetUpdates", "/erdtree.v1.Replication/Replicate", "/erdtree.v1.Admin/Status",
            "/erdtree.v1.Admin/ListSlaves", "/erdtree.v1.Admin/AddSlave", "/erdtree.v1.Admin/RemoveSlave",
        ]
        let described = table.descriptions.map(\.path)
        #expect(Array(described.prefix(kvstore.count)) == kvstore, "in the order the proto declares them")
        #expect(table.descriptions.allSatisfy { $0.transcoder != nil })
        // And every other service's methods too: the table is the whole descriptor set.
        #expect(described == DescriptorIndex.embedded.methods.map(\.path))
        #expect(described.contains("/grpc.health.v1.Health/Watch"))
        #expect(described.contains("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"))
    }

    /// api/etcd is generated for the node's etcd client, which calls etcd; no server of ours
    /// serves it, so neither the descriptor set nor the list of generated services holds it.
    @Test func etcdProtosAreGeneratedButNeitherDescribedNorListed() {
        #expect(!table.descriptions.contains { $0.path.hasPrefix("/etcdserverpb.") })
        #expect(DescriptorIndex.embedded.fileByFilename("etcd/etcdserverpb/rpc.proto") == nil)
        let generated = UnsafeBufferPointer(
            start: erdtree_service_descriptors_list(), count: erdtree_service_descriptors_count)
        #expect(!generated.contains { String(cString: $0.pointee.name).hasPrefix("etcdserverpb.") })
        // The client's messages are there all the same.
        #expect(String(cString: etcdserverpb__range_request__descriptor.name) == "etcdserverpb.RangeRequest")
        #expect(String(cString: mvccpb__key_value__descriptor.name) == "mvccpb.KeyValue")
    }

    @Test func methodsCarryTheirMessageTypesAndStreaming() throws {
        let get = try #require(table.entries.first { $0.method.path == "/erdtree.v1.KVStore/Get" }).method
        #expect(get.inputType == "erdtree.v1.GetRequest")
        #expect(get.outputType == "erdtree.v1.GetResponse")
        #expect(!get.clientStreaming && !get.serverStreaming)
        let replicate = try #require(table.entries.first { $0.method.name == "Replicate" }).method
        #expect(replicate.clientStreaming && replicate.serverStreaming)
        let watch = try #require(table.entries.first { $0.method.path == "/grpc.health.v1.Health/Watch" }).method
        #expect(!watch.clientStreaming && watch.serverStreaming)
    }

    @Test func exactlyTheMethodsMarkedNoSideEffectsInTheProtoMayBeCalledWithGet() throws {
        let noSideEffects = Set(table.descriptions.filter(\.noSideEffects).map(\.path))
        #expect(
            noSideEffects == [
                "/erdtree.v1.KVStore/Get", "/erdtree.v1.KVStore/GetUpdates", "/erdtree.v1.Admin/Status",
                "/erdtree.v1.Admin/ListSlaves",
            ])
        #expect(noSideEffects == (try Self.markedNoSideEffectsInAPI()))
        let getUpdates = try #require(table.entries.first { $0.method.name == "GetUpdates" }).method
        #expect(getUpdates.idempotencyLevel == .noSideEffects)
        let set = try #require(table.entries.first { $0.method.path == "/erdtree.v1.KVStore/Set" }).method
        #expect(set.idempotencyLevel == .unknown)
    }

    @Test func getTranscodersRoundTripARequestAndAResponse() throws {
        let transcoder = try #require(table.entries.first { $0.method.path == "/erdtree.v1.KVStore/Get" }).transcoder
        let allocator = ByteBufferAllocator()

        let requestJSON = #"{"key":"user:42","minLsn":"7"}"#
        let request = try transcoder.binaryRequest(fromJSON: ByteBuffer(string: requestJSON), allocator: allocator)
        let requestBytes = Array(request.readableBytesView)
        #expect(requestBytes == [0x0A, 0x07] + Array("user:42".utf8) + [0x10, 0x07], "what protobuf-c would pack")
        let backToJSON = try requestBytes.withUnsafeBytes { try ProtoJSON.encode($0, as: transcoder.input) }
        #expect(String(decoding: backToJSON, as: UTF8.self) == requestJSON)

        // GetResponse{value: "hi", found: true, lsn: 9}, as protobuf-c packs it.
        let response: [UInt8] = [0x0A, 0x02, 0x68, 0x69, 0x10, 0x01, 0x18, 0x09]
        let json = try transcoder.jsonResponse(fromBinary: ByteBuffer(bytes: response), allocator: allocator)
        let responseJSON = String(buffer: json)
        #expect(responseJSON == #"{"value":"aGk=","found":true,"lsn":"9"}"#)
        #expect(try ProtoJSON.decode(Array(responseJSON.utf8), as: transcoder.output) == response)
    }

    @Test func everyTranscoderReadsAndWritesItsEmptyMessages() throws {
        let allocator = ByteBufferAllocator()
        for entry in table.entries {
            let request = try entry.transcoder.binaryRequest(fromJSON: ByteBuffer(string: "{}"), allocator: allocator)
            #expect(request.readableBytes == 0, "\(entry.method.path)")
            let json = try entry.transcoder.jsonResponse(fromBinary: ByteBuffer(), allocator: allocator)
            #expect(String(buffer: json) == "{}", "\(entry.method.path)")
        }
    }

    @Test func aSetAndGeneratedCodeThatDisagreeAreRefused() throws {
        let generated = Array(
            UnsafeBufferPointer(start: erdtree_service_descriptors_list(), count: erdtree_service_descriptors_count))
        #expect(generated.count == 6)
        let withoutReflection = generated.filter { !String(cString: $0.pointee.name).contains("reflection") }
        #expect(
            throws: DescriptorSetError.generatedCodeMismatch(
                method: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                reason: "protobuf-c generated no descriptor for it")
        ) { try MethodTable(index: .embedded, generated: withoutReflection) }
        let emptySet = try DescriptorIndex(descriptorSet: [UInt8]())
        #expect(
            throws: DescriptorSetError.generatedCodeMismatch(
                method: "/erdtree.v1.Admin/AddSlave", reason: "the descriptor set does not declare it")
        ) { try MethodTable(index: emptySet, generated: generated) }
    }

    // MARK: Helpers

    /// The paths of the methods the proto files in api/ mark `idempotency_level =
    /// NO_SIDE_EFFECTS`, read from their source text (`buf format` layout: one `rpc` per line,
    /// its options in the braces after it).
    private static func markedNoSideEffectsInAPI() throws -> Set<String> {
        let api = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../../api").standardized
        let files = try #require(FileManager.default.enumerator(atPath: api.path)).compactMap { $0 as? String }
        #expect(files.contains("erdtree/v1/kvstore.proto"))
        var marked: Set<String> = []
        for file in files where file.hasSuffix(".proto") {
            let text = try String(contentsOf: api.appendingPathComponent(file), encoding: .utf8)
            var package = ""
            var service = ""
            var method = ""
            for line in text.split(separator: "\n").map({ $0.trimmingCharacters(in: .whitespaces) }) {
                let words = line.split(whereSeparator: { " ;({".contains($0) }).map(String.init)
                switch words.first {
                case "package": package = words[1]
                case "service": service = words[1]
                case "rpc": method = words[1]
                case "option" where line.contains("idempotency_level = NO_SIDE_EFFECTS"):
                    marked.insert("/\(package).\(service)/\(method)")
                default: break
                }
            }
        }
        return marked
    }
}
