internal import CProtobufC
internal import ErdtreeProto
import ErdtreeRPC

/// Every method this binary has a schema for: the descriptor set's declaration of it (path,
/// message types, idempotency level) joined with the message descriptors protobuf-c
/// generated for it, which Connect's JSON codec works from.
///
/// Nothing is listed by hand: the services come from ErdtreeProto's list of generated service
/// descriptors, the methods' options from the embedded descriptor set, both written by
/// `scripts/generate.sh` from `api/`. Built once, at startup; immutable and shared.
package struct MethodTable: Sendable {
    /// One method: what the set declares, and the JSON codec for its messages.
    package struct Entry: Sendable {
        package let method: MethodDeclaration
        package let transcoder: ProtoJSONTranscoder
    }

    /// In the descriptor set's order: by file, service, then method.
    package let entries: [Entry]

    /// The table of the descriptor set and services compiled into ErdtreeProto.
    package static let embedded: MethodTable = {
        let generated = UnsafeBufferPointer(
            start: erdtree_service_descriptors_list(), count: erdtree_service_descriptors_count)
        do {
            return try MethodTable(index: .embedded, generated: Array(generated))
        } catch {
            preconditionFailure(
                "the code generated into ErdtreeProto does not match its descriptor set (\(error)); rerun scripts/generate.sh"
            )
        }
    }()

    /// What the router needs of each method: its JSON transcoder, and whether the proto marks
    /// it `idempotency_level = NO_SIDE_EFFECTS`, which lets Connect clients call it with GET.
    package var descriptions: [RPCMethodDescription] {
        entries.map { entry in
            RPCMethodDescription(
                path: entry.method.path, transcoder: entry.transcoder,
                noSideEffects: entry.method.idempotencyLevel == .noSideEffects)
        }
    }

    /// Joins every method `index` declares with its protobuf-c method descriptor in `generated`.
    ///
    /// - Throws: `DescriptorSetError.generatedCodeMismatch` when a method is in one and not
    ///   the other, or when they name different message types for it.
    init(index: DescriptorIndex, generated: [UnsafePointer<ProtobufCServiceDescriptor>]) throws(DescriptorSetError) {
        var generatedTypes: [String: (input: ProtoJSON.Descriptor, output: ProtoJSON.Descriptor)] = [:]
        for service in generated {
            let serviceName = String(cString: service.pointee.name)
            let methods = UnsafeBufferPointer(start: service.pointee.methods, count: Int(service.pointee.n_methods))
            for method in methods {
                let path = "/\(serviceName)/\(String(cString: method.name))"
                guard let input = method.input, let output = method.output else {
                    throw .generatedCodeMismatch(method: path, reason: "protobuf-c generated no message types for it")
                }
                generatedTypes[path] = (input, output)
            }
        }
        var entries: [Entry] = []
        for method in index.methods {
            guard let types = generatedTypes.removeValue(forKey: method.path) else {
                throw .generatedCodeMismatch(method: method.path, reason: "protobuf-c generated no descriptor for it")
            }
            for (declared, descriptor) in [(method.inputType, types.input), (method.outputType, types.output)] {
                let generatedName = ProtoJSON.name(of: descriptor)
                guard generatedName == declared else {
                    throw .generatedCodeMismatch(
                        method: method.path,
                        reason: "the set names the message \(declared), the generated code \(generatedName)")
                }
            }
            entries.append(
                Entry(method: method, transcoder: ProtoJSONTranscoder(input: types.input, output: types.output)))
        }
        if let extra = generatedTypes.keys.min() {
            throw .generatedCodeMismatch(method: extra, reason: "the descriptor set does not declare it")
        }
        self.entries = entries
    }
}
