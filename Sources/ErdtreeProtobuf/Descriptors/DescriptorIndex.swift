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
            let file = try lengthDelimitedFields(of: range)
            let name = string(file[1]?.last)
            // The package scopes every other name, and may follow them.
            let package = string(file[2]?.last)
            guard fileIndexByName[name] == nil else {
                duplicateFile = name
                return
            }
            fileIndexByName[name] = fileIndex
            files.append(
                File(
                    name: name,
                    bytes: Array(UnsafeRawBufferPointer(rebasing: buffer[range])),
                    dependencies: (file[3] ?? []).map { string($0) }
                )
            )

            try addDeclarations(file, messages: 4, enums: 5, extensions: 7, scope: package, file: fileIndex)
            for service in file[6] ?? [] {
                try addService(range: service, scope: package, file: fileIndex)
            }
        }

        /// Reads a `DescriptorProto`, nested types included.
        private mutating func addMessage(range: Range<Int>, scope: String, file: Int) throws(WireError) {
            let message = try lengthDelimitedFields(of: range)
            let fullName = qualified(string(message[1]?.last), in: scope)
            define(fullName, file: file, kind: .message)
            for field in message[2] ?? [] {
                try addField(range: field, scope: fullName, file: file, kind: .field)
            }
            try addDeclarations(message, messages: 3, enums: 4, extensions: 6, scope: fullName, file: file)
            for oneof in message[8] ?? [] {
                define(qualified(try readName(range: oneof), in: fullName), file: file, kind: .oneof)
            }
        }

        /// Reads the messages, enums and extensions a file or a message declares (`fields`, by
        /// field number, which differ between `FileDescriptorProto` and `DescriptorProto`).
        private mutating func addDeclarations(
            _ fields: [UInt32: [Range<Int>]], messages: UInt32, enums: UInt32, extensions: UInt32, scope: String,
            file: Int
        ) throws(WireError) {
            for message in fields[messages] ?? [] {
                try addMessage(range: message, scope: scope, file: file)
            }
            for enumeration in fields[enums] ?? [] {
                try addEnum(range: enumeration, scope: scope, file: file)
            }
            for field in fields[extensions] ?? [] {
                try addField(range: field, scope: scope, file: file, kind: .extensionField)
            }
        }

        /// Reads an `EnumDescriptorProto`. Its values are scoped like the enum
        /// itself (C++ rules, as protoc and every descriptor pool do), so
        /// `erdtree.v1.OP_SET`, not `erdtree.v1.Op.OP_SET`.
        private mutating func addEnum(range: Range<Int>, scope: String, file: Int) throws(WireError) {
            let enumeration = try lengthDelimitedFields(of: range)
            define(qualified(string(enumeration[1]?.last), in: scope), file: file, kind: .enumeration)
            for value in enumeration[2] ?? [] {
                define(qualified(try readName(range: value), in: scope), file: file, kind: .enumValue)
            }
        }

        /// Reads a `ServiceDescriptorProto` and its methods.
        private mutating func addService(range: Range<Int>, scope: String, file: Int) throws(WireError) {
            let service = try lengthDelimitedFields(of: range)
            let fullName = qualified(string(service[1]?.last), in: scope)
            define(fullName, file: file, kind: .service)
            serviceNames.append(fullName)
            for range in service[2] ?? [] {
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
            string(try lengthDelimitedFields(of: range)[1]?.last)
        }

        /// The length-delimited fields of the descriptor message in `range`, by field number,
        /// each in order: names and nested descriptors, all the walk needs of most of them.
        /// (For a singular field, such as a name, the last occurrence counts.)
        private func lengthDelimitedFields(of range: Range<Int>) throws(WireError) -> [UInt32: [Range<Int>]] {
            var fields: [UInt32: [Range<Int>]] = [:]
            var reader = WireReader(buffer, range: range)
            while let field = try reader.next() {
                if case .lengthDelimited(let value) = field.value { fields[field.number, default: []].append(value) }
            }
            return fields
        }

        /// The UTF-8 text in `range` of the set; "" for none.
        private func string(_ range: Range<Int>?) -> String {
            range.map { WireReader(buffer).string($0) } ?? ""
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
