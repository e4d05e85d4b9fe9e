internal import ErdtreeProto

/// The proto files this server is built from, indexed for gRPC server
/// reflection (grpc/grpc doc/server-reflection.md).
///
/// Built once, at startup, from a serialized `google.protobuf.FileDescriptorSet`
/// (normally `embedded`, which `scripts/generate.sh` compiles into
/// ErdtreeProto). Every answer is precomputed then, so lookups on the request
/// path only hash a string and hand back arrays that already exist; the index
/// is immutable and safe to share between event loops.
///
/// Answers that return files give each file as the serialized
/// `FileDescriptorProto` exactly as it appears in the set: the file asked for
/// first, then every file it imports, directly or not, each once. That is the
/// `FileDescriptorResponse.file_descriptor_proto` list reflection sends.
public struct DescriptorIndex: Sendable {
    /// What kind of declaration a fully qualified name refers to.
    enum SymbolKind: Sendable {
        case message, enumeration, enumValue, service, method, field, oneof, extensionField
    }

    struct Symbol: Sendable {
        var file: Int
        var kind: SymbolKind
    }

    /// Index into `answers` of each file, by name ("erdtree/v1/kvstore.proto").
    private let fileIndexByName: [String: Int]
    /// Per file: its bytes followed by those of its transitive imports.
    private let answers: [[[UInt8]]]
    private let symbols: [String: Symbol]
    /// Extension field numbers by fully qualified extended type (no leading
    /// dot), with the file declaring each.
    private let extensionsByExtendee: [String: [(number: Int32, file: Int)]]

    /// Every service's fully qualified name ("erdtree.v1.KVStore"), in the
    /// order the set declares them: what reflection's `list_services` answers.
    public let serviceNames: [String]

    /// Every method of every service, in the order the set declares them.
    package let methods: [MethodDeclaration]

    /// The index of the descriptor set compiled into ErdtreeProto: every
    /// proto in `api/` (erdtree.v1, grpc.health.v1, grpc.reflection.v1 and
    /// v1alpha). Parsed on first use.
    public static let embedded: DescriptorIndex = {
        let bytes = UnsafeRawBufferPointer(
            start: erdtree_descriptor_set_bytes(),
            count: erdtree_descriptor_set_len
        )
        do {
            return try DescriptorIndex(descriptorSet: bytes)
        } catch {
            preconditionFailure(
                "the descriptor set embedded in ErdtreeProto cannot be indexed (\(error)); rerun scripts/generate.sh"
            )
        }
    }()

    /// Indexes a serialized `google.protobuf.FileDescriptorSet`, copying out
    /// each file's bytes; `descriptorSet` need not outlive the call.
    ///
    /// - Throws: `DescriptorSetError` if the bytes are not a descriptor set,
    ///   name a file twice, or import a file the set does not hold.
    public init(descriptorSet: UnsafeRawBufferPointer) throws(DescriptorSetError) {
        var builder = Builder(buffer: descriptorSet)
        do throws(WireError) {
            var reader = WireReader(descriptorSet)
            while builder.duplicateFile == nil, let field = try reader.next() {
                // FileDescriptorSet.file = 1
                if field.number == 1, case .lengthDelimited(let file) = field.value {
                    try builder.addFile(range: file)
                }
            }
        } catch {
            throw .malformed(offset: error.offset, reason: error.reason.description)
        }
        if let name = builder.duplicateFile { throw .duplicateFile(name: name) }
        try self.init(builder)
    }

    /// Indexes a serialized `google.protobuf.FileDescriptorSet`.
    ///
    /// - Throws: `DescriptorSetError`, as `init(descriptorSet:)` for a buffer.
    public init(descriptorSet: [UInt8]) throws(DescriptorSetError) {
        let result = descriptorSet.withUnsafeBytes { bytes in
            Result { () throws(DescriptorSetError) in try DescriptorIndex(descriptorSet: bytes) }
        }
        self = try result.get()
    }

    /// The file that declares `symbol`, then its transitive imports.
    ///
    /// - Parameter symbol: a fully qualified name without a leading dot: a
    ///   package-level or nested message or enum ("erdtree.v1.GetRequest"), an
    ///   enum value in its enum's scope ("erdtree.v1.OP_SET"), a service
    ///   ("erdtree.v1.KVStore"), a method ("erdtree.v1.KVStore.Get"), a field
    ///   or oneof ("erdtree.v1.GetRequest.key") or an extension.
    /// - Returns: serialized `FileDescriptorProto`s, or nil when no file
    ///   declares the symbol (reflection answers NOT_FOUND).
    public func fileContainingSymbol(_ symbol: String) -> [[UInt8]]? {
        guard let found = symbols[symbol] else { return nil }
        return answers[found.file]
    }

    /// The file named `name` ("erdtree/v1/kvstore.proto"), then its
    /// transitive imports; nil for an unknown name.
    public func fileByFilename(_ name: String) -> [[UInt8]]? {
        guard let index = fileIndexByName[name] else { return nil }
        return answers[index]
    }

    /// The file declaring extension `number` of message `extendee` (fully
    /// qualified, no leading dot), then its transitive imports; nil if no
    /// file declares it.
    public func fileContainingExtension(extendee: String, number: Int32) -> [[UInt8]]? {
        guard let match = extensionsByExtendee[extendee]?.first(where: { $0.number == number }) else {
            return nil
        }
        return answers[match.file]
    }

    /// The field numbers of every extension of message type `typeName` (fully
    /// qualified, no leading dot) declared in the set, ascending: empty for a
    /// message nobody extends, nil when `typeName` is not a message here.
    public func extensionNumbers(ofType typeName: String) -> [Int32]? {
        guard symbols[typeName]?.kind == .message else { return nil }
        return (extensionsByExtendee[typeName] ?? []).map(\.number).sorted()
    }

    private init(_ builder: Builder) throws(DescriptorSetError) {
        var dependencyIndices: [[Int]] = []
        dependencyIndices.reserveCapacity(builder.files.count)
        for file in builder.files {
            var indices: [Int] = []
            for dependency in file.dependencies {
                guard let index = builder.fileIndexByName[dependency] else {
                    throw .missingDependency(file: file.name, dependency: dependency)
                }
                indices.append(index)
            }
            dependencyIndices.append(indices)
        }

        var answers: [[[UInt8]]] = []
        answers.reserveCapacity(builder.files.count)
        for root in builder.files.indices {
            // Depth-first from the file asked for, so it comes first and each
            // import follows once however many files import it.
            var visited = Set<Int>()
            var order: [Int] = []
            var stack = [root]
            while let index = stack.popLast() {
                guard visited.insert(index).inserted else { continue }
                order.append(index)
                stack.append(contentsOf: dependencyIndices[index].reversed())
            }
            answers.append(order.map { builder.files[$0].bytes })
        }

        self.fileIndexByName = builder.fileIndexByName
        self.answers = answers
        self.symbols = builder.symbols
        self.extensionsByExtendee = builder.extensionsByExtendee
        self.serviceNames = builder.serviceNames
        self.methods = builder.methods
    }
}

extension DescriptorIndex {
    /// Walks the descriptor messages of one set, collecting what the index
    /// needs. Field numbers are those of google/protobuf/descriptor.proto.
    private struct Builder {
        struct File {
            var name: String
            var bytes: [UInt8]
            var dependencies: [String]
        }

        let buffer: UnsafeRawBufferPointer
        var files: [File] = []
        var fileIndexByName: [String: Int] = [:]
        var symbols: [String: Symbol] = [:]
        var extensionsByExtendee: [String: [(number: Int32, file: Int)]] = [:]
        var serviceNames: [String] = []
        var methods: [MethodDeclaration] = []
        /// The first file name seen twice, which stops the walk: the set is refused.
        var duplicateFile: String?

        init(buffer: UnsafeRawBufferPointer) {
            self.buffer = buffer
        }

        /// Reads a `FileDescriptorProto`.
        mutating func addFile(range: Range<Int>) throws(WireError) {
            let fileIndex = files.count
            var name = ""
            var package = ""
            var dependencies: [String] = []
            var messages: [Range<Int>] = []
            var enums: [Range<Int>] = []
            var services: [Range<Int>] = []
            var extensions: [Range<Int>] = []

            // The package scopes every other name, and may follow them.
            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                guard case .lengthDelimited(let value) = field.value else { continue }
                switch field.number {
                case 1: name = reader.string(value)
                case 2: package = reader.string(value)
                case 3: dependencies.append(reader.string(value))
                case 4: messages.append(value)
                case 5: enums.append(value)
                case 6: services.append(value)
                case 7: extensions.append(value)
                default: break
                }
            }

            guard fileIndexByName[name] == nil else {
                duplicateFile = name
                return
            }
            fileIndexByName[name] = fileIndex
            files.append(
                File(
                    name: name,
                    bytes: Array(UnsafeRawBufferPointer(rebasing: buffer[range])),
                    dependencies: dependencies
                )
            )

            for message in messages {
                try addMessage(range: message, scope: package, file: fileIndex)
            }
            for enumeration in enums {
                try addEnum(range: enumeration, scope: package, file: fileIndex)
            }
            for service in services {
                try addService(range: service, scope: package, file: fileIndex)
            }
            for field in extensions {
                try addField(range: field, scope: package, file: fileIndex, kind: .extensionField)
            }
        }

        /// Reads a `DescriptorProto`, nested types included.
        private mutating func addMessage(range: Range<Int>, scope: String, file: Int) throws(WireError) {
            var name = ""
            var fields: [Range<Int>] = []
            var nested: [Range<Int>] = []
            var enums: [Range<Int>] = []
            var extensions: [Range<Int>] = []
            var oneofs: [Range<Int>] = []

            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                guard case .lengthDelimited(let value) = field.value else { continue }
                switch field.number {
                case 1: name = reader.string(value)
                case 2: fields.append(value)
                case 3: nested.append(value)
                case 4: enums.append(value)
                case 6: extensions.append(value)
                case 8: oneofs.append(value)
                default: break
                }
            }

            let fullName = qualified(name, in: scope)
            define(fullName, file: file, kind: .message)
            for field in fields {
                try addField(range: field, scope: fullName, file: file, kind: .field)
            }
            for message in nested {
                try addMessage(range: message, scope: fullName, file: file)
            }
            for enumeration in enums {
                try addEnum(range: enumeration, scope: fullName, file: file)
            }
            for field in extensions {
                try addField(range: field, scope: fullName, file: file, kind: .extensionField)
            }
            for oneof in oneofs {
                // OneofDescriptorProto.name = 1
                let oneofName = try readName(range: oneof)
                define(qualified(oneofName, in: fullName), file: file, kind: .oneof)
            }
        }

        /// Reads an `EnumDescriptorProto`. Its values are scoped like the enum
        /// itself (C++ rules, as protoc and every descriptor pool do), so
        /// `erdtree.v1.OP_SET`, not `erdtree.v1.Op.OP_SET`.
        private mutating func addEnum(range: Range<Int>, scope: String, file: Int) throws(WireError) {
            var name = ""
            var values: [Range<Int>] = []
            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                switch (field.number, field.value) {
                case (1, .lengthDelimited(let value)): name = reader.string(value)
                case (2, .lengthDelimited(let value)): values.append(value)
                default: break
                }
            }
            define(qualified(name, in: scope), file: file, kind: .enumeration)
            for value in values {
                // EnumValueDescriptorProto.name = 1
                define(qualified(try readName(range: value), in: scope), file: file, kind: .enumValue)
            }
        }

        /// Reads a `ServiceDescriptorProto` and its methods.
        private mutating func addService(range: Range<Int>, scope: String, file: Int) throws(WireError) {
            var name = ""
            var methods: [Range<Int>] = []
            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                switch (field.number, field.value) {
                case (1, .lengthDelimited(let value)): name = reader.string(value)
                case (2, .lengthDelimited(let value)): methods.append(value)
                default: break
                }
            }
            let fullName = qualified(name, in: scope)
            define(fullName, file: file, kind: .service)
            serviceNames.append(fullName)
            for range in methods {
                let method = try readMethod(range: range, service: fullName)
                define(qualified(method.name, in: fullName), file: file, kind: .method)
                self.methods.append(method)
            }
        }

        /// Reads a `MethodDescriptorProto`, and its `MethodOptions` for the idempotency level.
        private func readMethod(range: Range<Int>, service: String) throws(WireError) -> MethodDeclaration {
            var method = MethodDeclaration(service: service)
            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                switch (field.number, field.value) {
                case (1, .lengthDelimited(let value)): method.name = reader.string(value)
                case (2, .lengthDelimited(let value)): method.inputType = referencedName(reader.string(value))
                case (3, .lengthDelimited(let value)): method.outputType = referencedName(reader.string(value))
                case (4, .lengthDelimited(let options)):
                    var optionsReader = WireReader(buffer, range: options)
                    while let option = try optionsReader.next() {
                        // MethodOptions.idempotency_level = 34
                        if option.number == 34, case .varint(let level) = option.value {
                            method.idempotencyLevel = .init(rawValue: Int(truncatingIfNeeded: level)) ?? .unknown
                        }
                    }
                case (5, .varint(let value)): method.clientStreaming = value != 0
                case (6, .varint(let value)): method.serverStreaming = value != 0
                default: break
                }
            }
            return method
        }

        /// Reads a `FieldDescriptorProto`: a message's field, or an extension
        /// declared in `scope` (then recorded under its extendee too).
        private mutating func addField(
            range: Range<Int>,
            scope: String,
            file: Int,
            kind: SymbolKind
        ) throws(WireError) {
            var name = ""
            var extendee = ""
            var number: Int32 = 0
            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                switch (field.number, field.value) {
                case (1, .lengthDelimited(let value)): name = reader.string(value)
                case (2, .lengthDelimited(let value)): extendee = reader.string(value)
                case (3, .varint(let value)): number = Int32(truncatingIfNeeded: value)
                default: break
                }
            }
            define(qualified(name, in: scope), file: file, kind: kind)
            if kind == .extensionField {
                extensionsByExtendee[referencedName(extendee), default: []].append((number: number, file: file))
            }
        }

        /// The fully qualified name, without the leading dot, of a type a descriptor refers to:
        /// compiled descriptors reference types as ".pkg.Type".
        private func referencedName(_ reference: String) -> String {
            reference.hasPrefix(".") ? String(reference.dropFirst()) : reference
        }

        /// Field 1 of a descriptor message, which is its name in all of them.
        private func readName(range: Range<Int>) throws(WireError) -> String {
            var reader = WireReader(buffer, range: range)
            var name = ""
            while let field = try reader.next() {
                if field.number == 1, case .lengthDelimited(let value) = field.value { name = reader.string(value) }
            }
            return name
        }

        /// Records a symbol; a name declared twice keeps its first file, as
        /// protoc would have refused to build such a set anyway.
        private mutating func define(_ fullName: String, file: Int, kind: SymbolKind) {
            if symbols[fullName] == nil {
                symbols[fullName] = Symbol(file: file, kind: kind)
            }
        }

        private func qualified(_ name: String, in scope: String) -> String {
            scope.isEmpty ? name : scope + "." + name
        }
    }
}
