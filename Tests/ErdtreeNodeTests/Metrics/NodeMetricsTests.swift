import ErdtreeRPC
import Testing

@testable import ErdtreeNode

/// What `/metrics` exposes of calls: labels bounded by the routes and the canonical codes.
@Suite struct NodeMetricsTests {
    private func exposition(_ metrics: NodeMetrics) -> String {
        String(decoding: metrics.exposition(), as: UTF8.self)
    }

    @Test func aRouteIsLabelledByServiceAndMethod() {
        #expect(NodeMetrics.labels(forPath: "/erdtree.v1.KVStore/Get") == ("erdtree.v1.KVStore", "Get"))
        #expect(NodeMetrics.labels(forPath: "/no-method") == ("unknown", "unknown"))
    }

    @Test func callsAreCountedByCodeAndProtocolAndTimed() {
        let metrics = NodeMetrics(metricsNeedToken: false)
        let get = metrics.recorder(forMethod: "/erdtree.v1.KVStore/Get")
        get.finished(code: .ok, protocol: .grpc, nanoseconds: 1_000)
        get.finished(code: .ok, protocol: .grpc, nanoseconds: 1_000)
        get.finished(code: .notFound, protocol: .connectGet, nanoseconds: 1_000)
        let text = exposition(metrics)
        #expect(
            text.contains(
                #"erdtree_rpc_requests_total{service="erdtree.v1.KVStore",method="Get",code="OK",protocol="grpc"} 2"#))
        #expect(
            text.contains(
                #"erdtree_rpc_requests_total{service="erdtree.v1.KVStore",method="Get",code="NOT_FOUND",protocol="connect_get"} 1"#
            ))
        #expect(text.contains(#"erdtree_rpc_duration_seconds_count{service="erdtree.v1.KVStore",method="Get"} 3"#))
    }

    @Test func unroutedCallsShareOneLabelSetAndOddCodesCountAsUnknown() {
        let metrics = NodeMetrics(metricsNeedToken: false)
        metrics.unroutedRecorder.finished(code: .unimplemented, protocol: .connect, nanoseconds: 1)
        metrics.unroutedRecorder.finished(code: RPCStatus.Code(rawValue: 99), protocol: .grpc, nanoseconds: 1)
        let text = exposition(metrics)
        #expect(text.contains(#"{service="unknown",method="unknown",code="UNIMPLEMENTED",protocol="connect"} 1"#))
        #expect(text.contains(#"{service="unknown",method="unknown",code="UNKNOWN",protocol="grpc"} 1"#))
        #expect(!text.contains("99"))
    }

    @Test func openConnectionsAreCountedByProtocol() {
        let metrics = NodeMetrics(metricsNeedToken: false)
        metrics.connectionOpened(.http2)
        metrics.connectionOpened(.http2)
        metrics.connectionClosed(.http2)
        metrics.connectionOpened(.http1)
        let text = exposition(metrics)
        #expect(text.contains(#"erdtree_connections{protocol="http2"} 1"#))
        #expect(text.contains(#"erdtree_connections{protocol="http1"} 1"#))
    }
}
