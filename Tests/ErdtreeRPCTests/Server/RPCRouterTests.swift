import NIOCore
import Testing

@testable import ErdtreeRPC

/// Routes as the connection uses them: looked up by the raw `:path` bytes of a request.
@Suite struct RPCRouterTests {
    @Test func registeredPathIsFoundByItsRawBytes() throws {
        var router = RPCRouter()
        router.register("/erdtree.v1.KVStore/Get", .unary { _, _ in })
        router.register("/erdtree.v1.KVStore/Set", .unary { _, _ in })
        router.register("/grpc.health.v1.Health/Watch", .serverStreaming { _, _ in })

        let index = try #require(lookup(router, "/erdtree.v1.KVStore/Set"))
        #expect(router.route(at: index).path == "/erdtree.v1.KVStore/Set")
        let watch = try #require(lookup(router, "/grpc.health.v1.Health/Watch"))
        #expect(router.route(at: watch).path == "/grpc.health.v1.Health/Watch")
        guard case .serverStreaming = router.route(at: watch).handler else {
            Issue.record("Watch lost its shape")
            return
        }
    }

    @Test(arguments: [
        "/erdtree.v1.KVStore/Gets",  // longer
        "/erdtree.v1.KVStore/Ge",  // prefix
        "/erdtree.v1.KVStore/get",  // case differs
        "/erdtree.v1.KVStore/Gex",  // same length, last byte differs
        "erdtree.v1.KVStore/Get",  // no leading slash
        "/erdtree.v1.KVStore/Get/",
        "",
        "/",
    ])
    func unknownPathIsNil(path: String) {
        var router = RPCRouter()
        router.register("/erdtree.v1.KVStore/Get", .unary { _, _ in })
        #expect(lookup(router, path) == nil)
    }

    @Test func emptyRouterFindsNothing() {
        #expect(lookup(RPCRouter(), "/erdtree.v1.KVStore/Get") == nil)
        #expect(RPCRouter().serviceNames.isEmpty)
    }

    @Test func laterRegistrationReplacesTheEarlierOne() throws {
        var router = RPCRouter()
        router.register("/a.S/M", .unary { _, _ in })
        router.register("/a.S/Other", .unary { _, _ in })
        router.register("/a.S/M", .bidirectional { _ in })

        #expect(router.routes.count == 2)
        let index = try #require(lookup(router, "/a.S/M"))
        guard case .bidirectional = router.route(at: index).handler else {
            Issue.record("the first registration still answers /a.S/M")
            return
        }
        #expect(lookup(router, "/a.S/Other") != nil)
    }

    @Test func nonASCIIPathMatchesByteForByte() {
        var router = RPCRouter()
        router.register("/pkg.Sérvice/Méthod", .unary { _, _ in })
        #expect(lookup(router, "/pkg.Sérvice/Méthod") != nil)
        // Same characters, decomposed: different bytes, so a different path on the wire.
        #expect(lookup(router, "/pkg.Se\u{301}rvice/Méthod") == nil)
    }

    @Test func serviceNamesAreInRegistrationOrderWithoutDuplicates() {
        var router = RPCRouter()
        router.register("/erdtree.v1.KVStore/Get", .unary { _, _ in })
        router.register("/erdtree.v1.Admin/Status", .unary { _, _ in })
        router.register("/erdtree.v1.KVStore/Set", .unary { _, _ in })
        router.register("/grpc.health.v1.Health/Check", .unary { _, _ in })
        router.register("/erdtree.v1.Admin/ListSlaves", .unary { _, _ in })
        router.register("/grpc.health.v1.Health/Watch", .serverStreaming { _, _ in })
        #expect(router.serviceNames == ["erdtree.v1.KVStore", "erdtree.v1.Admin", "grpc.health.v1.Health"])
    }

    @Test func replacingARouteKeepsItsServiceListedOnce() {
        var router = RPCRouter()
        router.register("/a.One/M", .unary { _, _ in })
        router.register("/b.Two/M", .unary { _, _ in })
        router.register("/a.One/M", .unary { _, _ in })
        #expect(router.serviceNames.sorted() == ["a.One", "b.Two"])
        #expect(router.serviceNames.count == 2)
    }

    private func lookup(_ router: RPCRouter, _ path: String) -> Int? {
        Array(path.utf8).withUnsafeBytes { router.routeIndex(for: $0) }
    }
}
