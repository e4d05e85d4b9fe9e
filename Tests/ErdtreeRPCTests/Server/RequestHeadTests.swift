import Testing

@testable import ErdtreeRPC

/// How header fields become a transport-neutral request head, the same way for HTTP/2's
/// fields and HTTP/1.1's parsed head.
@Suite struct RequestHeadTests {
    private func http1(_ method: String, _ uri: String, _ fields: [(String, String)]) -> RequestHead {
        RequestHead(
            method: method, uri: uri, fields: fields.map { (name: $0.0, value: $0.1) }, router: MachineRoutes.router)
    }

    @Test func aKnownPathFindsItsRouteAndKeepsTheQueryApart() {
        let head = http1("GET", "/t.S/Getter?encoding=json&message=%7B%7D", [])
        #expect(head.method == .get)
        #expect(head.route?.path == MachineRoutes.getter && head.unknownPath.isEmpty)
        #expect(head.query == "encoding=json&message=%7B%7D")
    }

    @Test func anUnknownPathIsKeptForTheErrorWithoutItsQuery() {
        let head = http1("POST", "/t.S/Nope?x=1", [])
        #expect(head.route == nil && head.path == "/t.S/Nope")
    }

    @Test(arguments: [
        ("application/grpc", RequestHead.ContentType.grpc),
        ("application/grpc+proto", .grpc),
        ("application/grpc;charset=x", .grpc),
        ("application/grpc+json", .other("application/grpc+json")),
        ("application/json; charset=utf-8", .connect(.json)),
        ("Application/Proto", .connect(.proto)),
        ("application/connect+json", .connectStream(.json)),
        ("text/plain", .other("text/plain")),
    ])
    func contentTypesAreToldApart(value: String, expected: RequestHead.ContentType) {
        #expect(http1("POST", MachineRoutes.unary, [("content-type", value)]).contentType == expected)
    }

    @Test func http1FieldNamesAreLowerCasedLikeHTTP2s() {
        let head = http1(
            "POST", MachineRoutes.unary, [("Content-Type", "application/json"), ("Connect-Timeout-Ms", "5")])
        #expect(head.contentType == .connect(.json) && head.connect.timeoutMs == "5")
    }

    @Test func grpcCallsSkipTheConnectFieldsTheirClientsSendAnyway() {
        let head = http1(
            "POST", MachineRoutes.unary,
            [("content-type", "application/grpc"), ("accept-encoding", "gzip"), ("content-encoding", "gzip")])
        #expect(head.connect == RequestHead.ConnectFields())
    }

    @Test func grpcTimeoutAndEncodingAreRead() {
        let head = http1(
            "POST", MachineRoutes.unary, [("grpc-timeout", "2S"), ("grpc-encoding", "gzip"), ("te", "trailers")])
        #expect(head.grpcTimeoutNanos == 2_000_000_000 && head.grpcEncoding == "gzip")
        #expect(http1("POST", MachineRoutes.unary, [("grpc-encoding", "identity")]).grpcEncoding == nil)
        #expect(http1("POST", MachineRoutes.unary, [("grpc-timeout", "soon")]).grpcTimeoutNanos == nil, "ignored")
    }

    @Test func aCopiedHeadKeepsItsOwnConnectFields() {
        var first = http1("POST", MachineRoutes.unary, [("connect-timeout-ms", "1")])
        let copy = first
        var name = "connect-timeout-ms"
        var value = "9"
        name.withUTF8 { name in
            value.withUTF8 { value in
                first.add(
                    name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value),
                    router: MachineRoutes.router)
            }
        }
        #expect(first.connect.timeoutMs == "9" && copy.connect.timeoutMs == "1")
    }
}
