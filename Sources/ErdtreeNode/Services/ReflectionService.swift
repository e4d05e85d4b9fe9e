import ErdtreeProtobuf
import ErdtreeRPC
import NIOCore

/// `grpc.reflection.v1.ServerReflection` and its `v1alpha` twin, so grpcurl, `buf curl`
/// and other tools work with no proto files (grpc/grpc doc/server-reflection.md).
///
/// Answers come from the FileDescriptorSet compiled into ErdtreeProto; `list_services`
/// names the services the router actually serves.
public struct ReflectionService: Sendable {
    public static let paths = [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]

    private let index: DescriptorIndex

    public init(index: DescriptorIndex = .embedded) {
        self.index = index
    }

    /// Registers both versions. Call after every other service is registered, so the
    /// service list includes them all.
    public func register(in router: inout RPCRouter) {
        var names = router.serviceNames
        for path in Self.paths {
            if let service = path.split(separator: "/").first.map(String.init), !names.contains(service) {
                names.append(service)
            }
        }
        let services = names
        let index = self.index
        for path in Self.paths {
            router.register(
                path,
                .bidirectional { call in
                    call.onMessage { request in
                        do throws(RPCStatus) {
                            let response = try ReflectionCodec.respond(to: request, allocator: call.allocator) {
                                query in
                                Self.resolve(query, index: index, services: services)
                            }
                            call.send(response)
                        } catch {
                            call.finish(error)
                        }
                    }
                    call.onRequestEnd { call.finish(.ok) }
                })
        }
    }

    static func resolve(_ query: ReflectionQuery, index: DescriptorIndex, services: [String]) -> ReflectionAnswer {
        switch query {
        case .listServices:
            return .services(services)
        case .fileByFilename(let name):
            guard let files = index.fileByFilename(name) else {
                return .error(code: .notFound, message: "file '\(name)' not found")
            }
            return .files(files)
        case .fileContainingSymbol(let symbol):
            guard let files = index.fileContainingSymbol(symbol) else {
                return .error(code: .notFound, message: "symbol '\(symbol)' not found")
            }
            return .files(files)
        case .fileContainingExtension(let type, let number):
            guard let files = index.fileContainingExtension(extendee: type, number: number) else {
                return .error(code: .notFound, message: "extension \(number) of '\(type)' not found")
            }
            return .files(files)
        case .allExtensionNumbersOfType(let type):
            guard let numbers = index.extensionNumbers(ofType: type) else {
                return .error(code: .notFound, message: "type '\(type)' not found")
            }
            return .extensionNumbers(type: type, numbers: numbers)
        case .notSet:
            return .error(code: .invalidArgument, message: "the request names no query (message_request is not set)")
        }
    }
}
