/// One `rpc` as the descriptor set declares it (`google.protobuf.MethodDescriptorProto`).
package struct MethodDeclaration: Sendable, Equatable {
    /// `MethodOptions.idempotency_level`: what a call may change, so what a transport may
    /// retry or, for `noSideEffects`, serve to an HTTP GET (Connect).
    package enum IdempotencyLevel: Int, Sendable {
        case unknown = 0
        case noSideEffects = 1
        case idempotent = 2
    }

    /// Fully qualified, no leading dot: "erdtree.v1.KVStore".
    package var service: String
    package var name: String
    /// Fully qualified message names, no leading dot: "erdtree.v1.GetRequest".
    package var inputType = ""
    package var outputType = ""
    package var clientStreaming = false
    package var serverStreaming = false
    /// A level this code does not know (a newer descriptor.proto) reads as `unknown`.
    package var idempotencyLevel = IdempotencyLevel.unknown

    init(service: String, name: String = "") {
        self.service = service
        self.name = name
    }

    /// `/package.Service/Method`, the method's HTTP/2 `:path`.
    package var path: String { "/\(service)/\(name)" }
}
