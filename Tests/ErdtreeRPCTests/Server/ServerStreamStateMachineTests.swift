import NIOCore
import NIOHTTP1
import Testing

@testable import ErdtreeRPC

/// Every transition of the call state machine, over both transports, named event-when-state:
/// what a request's head, body and end do, what the handler's answers do, and what leaves.
@Suite struct ServerStreamStateMachineTests {
    private let unknownMethod = RPCStatus(.unimplemented, "unknown method /t.S/Nope")

    // MARK: gRPC (HTTP/2)

    @Test func receiveHeadWhenUnaryGRPCWaitsForTheRequest() {
        let driver = MachineDriver(.http2)
        #expect(driver.head(grpcHead(MachineRoutes.unary)) == .none)
        #expect(driver.machine.state == .collecting)
        #expect(driver.data(framed([1, 2])) == [.none], "the one message is held until the request ends")
        #expect(driver.end() == .startUnary(request: [1, 2], deadlineNanos: nil))
        #expect(driver.machine.state == .running)
    }

    @Test func receiveHeadWithGRPCTimeoutArmsTheDeadlineBeforeTheHandler() {
        let driver = MachineDriver(.http2)
        #expect(
            driver.head(grpcHead(MachineRoutes.unary, [("grpc-timeout", "250m")])) == .armDeadline(nanos: 250_000_000))
    }

    @Test func receiveHeadWhenBidirectionalStartsTheHandlerAndDeliversEachMessage() {
        let driver = MachineDriver(.http2)
        #expect(driver.head(grpcHead(MachineRoutes.bidi)) == .startBidirectional(deadlineNanos: nil))
        #expect(driver.data(framed([1]) + framed([2, 2])) == [.deliver([1]), .deliver([2, 2])])
        #expect(driver.data(Array(framed([3]).prefix(3))) == [], "half a prefix waits for more")
        #expect(driver.data(Array(framed([3]).dropFirst(3))) == [.deliver([3])])
        #expect(driver.end() == .deliverEnd)
        #expect(driver.machine.requestEnded)
    }

    @Test func receiveHeadWhenPathIsUnknownAnswersTrailersOnlyAtOnce() {
        let driver = MachineDriver(.http2)
        let action = driver.head(grpcHead("/t.S/Nope"))
        #expect(action == .writeHead(.grpcTrailersOnly(unknownMethod, advertiseEncodings: false), hasBody: false))
        #expect(driver.machine.state == .finished)
        #expect(driver.data(framed([1])) == [], "the rest of the request is dropped")
        #expect(driver.end() == .none)
    }

    @Test func receiveHeadWithUnsupportedGRPCEncodingAdvertisesIdentity() {
        let driver = MachineDriver(.http2)
        let status = RPCStatus(.unimplemented, "grpc-encoding 'snappy' is not supported; this server accepts: identity")
        #expect(
            driver.head(grpcHead(MachineRoutes.unary, [("grpc-encoding", "snappy")]))
                == .writeHead(.grpcTrailersOnly(status, advertiseEncodings: true), hasBody: false))
    }

    @Test func receiveDataWithASecondMessageWhenUnaryFails() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        let status = RPCStatus(.invalidArgument, "/t.S/Unary takes one request message, got more")
        #expect(driver.data(framed([1]) + framed([2])) == [.none, .fail(status)])
    }

    @Test func receiveEndWithNoMessageWhenUnaryFails() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.stream))
        #expect(driver.end() == .fail(RPCStatus(.invalidArgument, "/t.S/Stream requires a request message, got none")))
    }

    @Test func receiveEndInsideAMessageFailsSayingHowFarItGot() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        #expect(driver.data(Array(framed([1, 2, 3]).prefix(6))) == [])
        #expect(
            driver.end()
                == .fail(RPCStatus(.invalidArgument, "request ended inside a message: got 1 of 3 message bytes")))
    }

    // MARK: Buffered request bytes (what HTTP/2 keeps out of the peer's windows)

    @Test func bufferedBytesWhenUnaryAreHeldUntilTheHandlerStarts() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        _ = driver.data(Array(framed([1, 2, 3]).prefix(6)))
        #expect(driver.machine.bufferedRequestBytes == 6, "a message arriving in part is held whole")
        _ = driver.data(Array(framed([1, 2, 3]).dropFirst(6)))
        #expect(driver.machine.bufferedRequestBytes == 3, "the message waits for the request to end")
        _ = driver.end()
        #expect(driver.machine.bufferedRequestBytes == 0, "the handler has it")
    }

    @Test func bufferedBytesWhenBidirectionalAreOnlyTheUnfinishedMessage() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        _ = driver.data(framed([1]) + Array(framed([2, 2]).prefix(4)))
        #expect(driver.machine.bufferedRequestBytes == 4)
    }

    @Test func abandonRequestWhileCollectingFailsAndHoldsNothing() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        _ = driver.data(Array(framed([1, 2, 3]).prefix(6)))
        let status = RPCStatus(.resourceExhausted, "too much")
        #expect(ActionSummary(driver.machine.abandonRequest(status)) == .fail(status))
        #expect(driver.machine.bufferedRequestBytes == 0)
        #expect(driver.data([9, 9]) == [], "later bytes are dropped")
        #expect(driver.machine.bufferedRequestBytes == 0)
    }

    @Test func finishWhileAMessageIsArrivingLetsGoOfIt() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        _ = driver.data(Array(framed([1, 2, 3]).prefix(6)))
        _ = driver.finish(.ok)
        #expect(driver.machine.bufferedRequestBytes == 0)
    }

    @Test func receiveDataAnnouncingAnOversizedMessageFailsBeforeItsBody() {
        let driver = MachineDriver(.http2, maxMessageBytes: 16)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        let actions = driver.data([0, 0, 0, 1, 0])
        guard case .fail(let status) = actions.first else {
            Issue.record("expected a failure, got \(actions)")
            return
        }
        #expect(status.code == .resourceExhausted)
        #expect(driver.data(framed([1])) == [], "nothing more is read")
    }

    @Test func receiveHeadWhenNotPostRefusesWith405AfterTheRequest() {
        let driver = MachineDriver(.http2)
        #expect(driver.head(requestHead("PUT", MachineRoutes.unary, contentType: "application/grpc")) == .none)
        #expect(driver.machine.state == .refusing)
        #expect(driver.data([1, 2, 3]) == [])
        #expect(
            driver.end() == .writeHead(.whole(WholeResponse(status: .methodNotAllowed, allow: "POST")), hasBody: false))
    }

    @Test func receiveHeadOfAGetWhenNoSideEffectsButGRPCIs405() {
        let driver = MachineDriver(.http2)
        _ = driver.head(requestHead("GET", MachineRoutes.getter, contentType: "application/grpc"))
        #expect(
            driver.end() == .writeHead(.whole(WholeResponse(status: .methodNotAllowed, allow: "POST")), hasBody: false))
    }

    @Test func receiveHeadOfGetHealthzOverHTTP2ProbesAndAnswersInPlainText() {
        for serving in [true, false] {
            let driver = MachineDriver(.http2)
            #expect(driver.head(requestHead("GET", "/healthz")) == .probeHealth)
            let head = WholeResponse(
                status: serving ? .ok : .serviceUnavailable, contentType: "text/plain; charset=utf-8")
            #expect(
                ActionSummary(driver.machine.answerHealthz(serving: serving)) == .writeHead(.whole(head), hasBody: true)
            )
            #expect(driver.machine.outbound.allBytes == Array((serving ? "SERVING\n" : "NOT_SERVING\n").utf8))
            #expect(driver.machine.isFinished)
        }
    }

    @Test(arguments: [ServerTransport.http1, .http2])
    func receiveHeadOfGetMetricsExposesTheObserversText(transport: ServerTransport) {
        let driver = MachineDriver(transport)
        #expect(driver.head(requestHead("GET", "/metrics")) == .exposeMetrics)
        let head = WholeResponse(
            status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8",
            metadata: ["cache-control": "no-store"])
        #expect(
            ActionSummary(driver.machine.answerMetrics(FixedObserver(needsToken: false)))
                == .writeHead(.whole(head), hasBody: true))
        #expect(driver.machine.outbound.allBytes == Array("erdtree_up 1\n".utf8))
    }

    @Test func answerMetricsWithoutATokenItWantsIs401() {
        let driver = MachineDriver(.http2)
        _ = driver.head(requestHead("GET", "/metrics"))
        guard case .writeHead(.whole(let head), _) = driver.machine.answerMetrics(FixedObserver(needsToken: true))
        else {
            Issue.record("no whole answer")
            return
        }
        #expect(head.status == .unauthorized && head.metadata["www-authenticate"] == "Bearer")
    }

    @Test(arguments: [("POST", ServerTransport.http2), ("HEAD", .http1)])
    func methodsOtherThanGetOnMetricsAre405(method: String, transport: ServerTransport) {
        let driver = MachineDriver(transport)
        #expect(driver.head(requestHead(method, "/metrics")) == .none)
        #expect(
            driver.end() == .writeHead(.whole(WholeResponse(status: .methodNotAllowed, allow: "GET")), hasBody: false))
    }

    @Test func receiveHeadOfAPostToHealthzOverHTTP2IsNoHealthCheck() {
        let driver = MachineDriver(.http2)
        #expect(driver.head(requestHead("POST", "/healthz", contentType: "application/grpc")) != .probeHealth)
    }

    @Test func receiveHeadWhenNeitherGRPCNorConnectRefusesWithABare415() {
        let driver = MachineDriver(.http2)
        #expect(driver.head(requestHead("POST", MachineRoutes.unary, contentType: "text/plain")) == .none)
        #expect(driver.end() == .writeHead(.whole(WholeResponse(status: .unsupportedMediaType)), hasBody: false))
    }

    // MARK: gRPC answers

    @Test func respondWhenRunningSendsOneHeadThenTheMessageAndOKTrailers() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        _ = driver.data(framed([7]))
        _ = driver.end()
        #expect(driver.respond([9, 9]) == .writeHead(.grpc, hasBody: true))
        #expect(driver.machine.isFinished)
        let body = driver.pullBody()
        #expect(body.bytes == framed([9, 9]) && body.end == .trailers(.ok))
        #expect(driver.send([1]) == .none, "answers after the end are ignored")
        #expect(driver.finish(RPCStatus(.internal)) == .none)
    }

    @Test func sendWhenStreamingStartsTheResponseOnceThenResumes() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        #expect(driver.send([1]) == .writeHead(.grpc, hasBody: true))
        #expect(driver.send([2]) == .resume)
        #expect(driver.pullBody() == (framed([1]) + framed([2]), nil), "no end until the call finishes")
        #expect(driver.finish(RPCStatus(.aborted, "stop")) == .resume)
        #expect(driver.pullBody() == ([], .trailers(RPCStatus(.aborted, "stop"))))
    }

    @Test func finishWhenNothingWasSentIsTrailersOnly() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        let status = RPCStatus(.notFound, "gone")
        #expect(
            driver.finish(status) == .writeHead(.grpcTrailersOnly(status, advertiseEncodings: false), hasBody: false))
    }

    @Test func finishWhileCollectingAnswersWithoutTheHandler() {
        // A deadline that passes while a unary request is still arriving.
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        let status = RPCStatus(.deadlineExceeded, "deadline exceeded after 1ms")
        #expect(
            driver.finish(status) == .writeHead(.grpcTrailersOnly(status, advertiseEncodings: false), hasBody: false))
        #expect(driver.end() == .none, "the request ending later starts nothing")
    }

    @Test func closeWhenRunningAsksForTheHandlerToBeCancelledOnce() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        #expect(driver.close())
        #expect(!driver.close())
        #expect(driver.send([1]) == .none)
    }

    @Test func closeWhenFinishedCancelsNothing() {
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        _ = driver.finish(.ok)
        #expect(!driver.close())
    }

    @Test func receiveHeaderAfterTheHeadIsIgnored() {
        // HTTP/2 trailers from the client reuse the header callbacks.
        let driver = MachineDriver(.http2)
        _ = driver.head(grpcHead(MachineRoutes.bidi))
        #expect(driver.head([(":path", "/t.S/Nope")]) == .none)
        #expect(driver.machine.head.path == MachineRoutes.bidi)
    }

    // MARK: Connect unary (both transports)

    @Test(arguments: [ServerTransport.http2, .http1])
    func receiveEndWhenConnectUnaryStartsTheHandlerWithTheTranscodedBody(transport: ServerTransport) {
        let driver = MachineDriver(transport)
        let head = requestHead(
            "POST", MachineRoutes.unary, contentType: "application/json", [("connect-timeout-ms", "1500")])
        #expect(driver.head(head) == .none)
        #expect(driver.data(Array(#"{"k":"#.utf8)) == [])
        #expect(driver.data(Array(#""v"}"#.utf8)) == [])
        #expect(driver.end() == .startUnary(request: Array(#"{"k":"v"}"#.utf8), deadlineNanos: 1_500_000_000))
        #expect(
            driver.respond([1, 2, 3])
                == .writeHead(.whole(WholeResponse(status: .ok, contentType: "application/json")), hasBody: true))
        #expect(driver.pullBody() == (Array(#"{"bytes":3}"#.utf8), .endOfBody))
    }

    @Test(arguments: [ServerTransport.http2, .http1])
    func receiveDataOverTheLimitWhenConnectUnaryIsRefusedOnceTheRequestEnds(transport: ServerTransport) {
        let driver = MachineDriver(transport, maxMessageBytes: 8)
        _ = driver.head(requestHead("POST", MachineRoutes.unary, contentType: "application/proto"))
        #expect(driver.data([UInt8](repeating: 1, count: 6)) == [])
        #expect(driver.data([UInt8](repeating: 1, count: 6)) == [], "read on, keeping nothing")
        #expect(
            driver.end() == .fail(RPCStatus(.resourceExhausted, "request body larger than the 8-byte limit")))
    }

    @Test(arguments: [ServerTransport.http2, .http1])
    func receiveEndWhenConnectUnaryNamesAStreamingMethodIs415(transport: ServerTransport) {
        let driver = MachineDriver(transport)
        _ = driver.head(requestHead("POST", MachineRoutes.stream, contentType: "application/proto"))
        let action = driver.end()
        #expect(
            action
                == .writeHead(
                    .whole(WholeResponse(status: .unsupportedMediaType, contentType: "application/json")), hasBody: true
                ))
        #expect(String(decoding: driver.pullBody().bytes, as: UTF8.self).contains("is a streaming method"))
    }

    @Test(arguments: [ServerTransport.http2, .http1])
    func receiveEndWithBadConnectHeadersIsRefusedInTheProtocolsOrder(transport: ServerTransport) {
        let driver = MachineDriver(transport)
        _ = driver.head(
            requestHead(
                "POST", MachineRoutes.unary, contentType: "application/proto",
                [("content-encoding", "br"), ("connect-protocol-version", "2")]))
        _ = driver.end()
        let body = String(decoding: driver.pullBody().bytes, as: UTF8.self)
        #expect(body.contains("content-encoding br is not supported"), "the encoding is checked first: \(body)")
    }

    @Test func receiveHeadOfAConnectGetTakesTheRequestFromTheQuery() {
        let driver = MachineDriver(.http2)
        #expect(driver.head(requestHead("GET", MachineRoutes.getter + "?encoding=proto&message=%01%02")) == .none)
        #expect(driver.data([9, 9]) == [], "a GET's body is ignored")
        #expect(driver.end() == .startUnary(request: [1, 2], deadlineNanos: nil))
    }

    @Test func receiveHeadOfAMalformedConnectGetAnswersAtOnceOverHTTP2() {
        let driver = MachineDriver(.http2)
        let action = driver.head(requestHead("GET", MachineRoutes.getter + "?message=x"))
        #expect(
            action
                == .writeHead(
                    .whole(WholeResponse(status: .badRequest, contentType: "application/json")), hasBody: true))
    }

    // MARK: Connect streaming

    @Test func receiveEndWhenConnectStreamingStartsTheHandlerAndTheAnswerEndsWithTheEndStreamEnvelope() {
        let driver = MachineDriver(.http2)
        #expect(
            driver.head(requestHead("POST", MachineRoutes.stream, contentType: "application/connect+proto")) == .none)
        #expect(driver.data(framed([4])) == [.none])
        #expect(driver.end() == .startUnary(request: [4], deadlineNanos: nil))
        let options = ConnectStreaming.Options(codec: .proto)
        #expect(driver.send([5]) == .writeHead(.connectStream(options), hasBody: true))
        #expect(driver.finish(.ok) == .resume)
        #expect(driver.pullBody() == (framed([5]) + endStreamEnvelope(.ok), .endOfBody))
    }

    @Test func receiveHeadWithAnUnknownStreamEncodingAnswersInTheEndStreamEnvelope() {
        let driver = MachineDriver(.http2)
        let action = driver.head(
            requestHead(
                "POST", MachineRoutes.stream, contentType: "application/connect+json",
                [("connect-content-encoding", "br")]))
        #expect(action == .writeHead(.connectStream(ConnectStreaming.Options(codec: .json)), hasBody: true))
        let status = RPCStatus(
            .unimplemented, "connect-content-encoding br is not supported; this server takes gzip, identity")
        #expect(driver.pullBody() == (endStreamEnvelope(status), .endOfBody))
    }

    @Test func sendWhenConnectStreamingJSONTranscodesEachMessage() {
        let driver = MachineDriver(.http2)
        _ = driver.head(requestHead("POST", MachineRoutes.bidi, contentType: "application/connect+json"))
        _ = driver.send([1, 2])
        #expect(driver.pullBody().bytes == framed(Array(#"{"bytes":2}"#.utf8)))
    }

    // MARK: HTTP/1.1 differences

    /// HTTP/2 refuses an unknown Connect path; HTTP/1.1, which carries only Connect, any
    /// unknown path whatever the method or content type.
    @Test(arguments: [
        (ServerTransport.http2, "POST", "application/json"), (.http1, "PUT", "application/grpc"),
    ])
    func receiveHeadWhenPathIsUnknownIsAConnect404OnceTheRequestEnds(
        transport: ServerTransport, method: String, contentType: String
    ) {
        let driver = MachineDriver(transport)
        #expect(driver.head(requestHead(method, "/t.S/Nope", contentType: contentType)) == .none)
        #expect(driver.data(Array("{}".utf8)) == [])
        #expect(
            driver.end()
                == .writeHead(.whole(WholeResponse(status: .notFound, contentType: "application/json")), hasBody: true))
        #expect(driver.pullBody().bytes == ConnectProtocol.errorBody(unknownMethod))
    }

    @Test func receiveHeadOverHTTP1OfGRPCIsAConnect415() {
        let driver = MachineDriver(.http1)
        _ = driver.head(grpcHead(MachineRoutes.unary))
        #expect(
            driver.end()
                == .writeHead(
                    .whole(WholeResponse(status: .unsupportedMediaType, contentType: "application/json")), hasBody: true
                ))
        #expect(
            String(decoding: driver.pullBody().bytes, as: UTF8.self).contains(
                "content-type application/grpc is not served"))
    }

    @Test func receiveHeadOverHTTP1WhenNotAllowedNamesTheMethodsInAConnectError() {
        let driver = MachineDriver(.http1)
        _ = driver.head(requestHead("DELETE", MachineRoutes.getter))
        let expected = WholeResponse(status: .methodNotAllowed, contentType: "application/json", allow: "GET, POST")
        #expect(driver.end() == .writeHead(.whole(expected), hasBody: true))
        #expect(String(decoding: driver.pullBody().bytes, as: UTF8.self).contains("/t.S/Getter takes GET, POST"))
    }

    @Test func receiveHeadOverHTTP1OfABidirectionalStreamIs505AndCloses() {
        let driver = MachineDriver(.http1)
        _ = driver.head(requestHead("POST", MachineRoutes.bidi, contentType: "application/connect+proto"))
        let expected = WholeResponse(
            status: .httpVersionNotSupported, contentType: "application/json", closesConnection: true)
        #expect(driver.end() == .writeHead(.whole(expected), hasBody: true))
    }

    @Test func receiveHeadOverHTTP1WithAnEarlyRefusalWaitsForTheRequestToEnd() {
        let driver = MachineDriver(.http1)
        #expect(
            driver.head(
                requestHead(
                    "POST", MachineRoutes.stream, contentType: "application/connect+proto",
                    [("connect-timeout-ms", "soon")])) == .none)
        #expect(driver.machine.state == .refusing)
        #expect(driver.end() == .writeHead(.connectStream(ConnectStreaming.Options(codec: .proto)), hasBody: true))
    }

    @Test func receiveEndOverHTTP1SplitsTheStreamsOneEnvelopeOnceTheBodyIsIn() {
        let driver = MachineDriver(.http1)
        _ = driver.head(requestHead("POST", MachineRoutes.stream, contentType: "application/connect+proto"))
        #expect(driver.data(framed([1])) == [], "collected whole, not deframed as it comes")
        #expect(driver.end() == .startUnary(request: [1], deadlineNanos: nil))
    }

    @Test func receiveEndOverHTTP1WithTwoEnvelopesFails() {
        let driver = MachineDriver(.http1)
        _ = driver.head(requestHead("POST", MachineRoutes.stream, contentType: "application/connect+proto"))
        _ = driver.data(framed([1]) + framed([2]))
        #expect(driver.end() == .fail(RPCStatus(.invalidArgument, "/t.S/Stream takes one request message, got more")))
    }

    @Test func receiveDataOverHTTP1PastTheLimitFailsTheStreamOnceItEnds() {
        let driver = MachineDriver(.http1, maxMessageBytes: 8)
        _ = driver.head(requestHead("POST", MachineRoutes.stream, contentType: "application/connect+proto"))
        _ = driver.data(framed([UInt8](repeating: 0, count: 16)))
        #expect(driver.end() == .fail(RPCStatus(.resourceExhausted, "request body larger than the 8-byte limit")))
        #expect(
            driver.finish(RPCStatus(.resourceExhausted, "x"))
                == .writeHead(.connectStream(ConnectStreaming.Options(codec: .proto)), hasBody: true))
    }

    @Test func takeBodyHandsOverEverythingQueuedAndSaysWhenItEnded() {
        let driver = MachineDriver(.http1)
        _ = driver.head(requestHead("POST", MachineRoutes.stream, contentType: "application/connect+proto"))
        _ = driver.data(framed([1]))
        _ = driver.end()
        _ = driver.send([2])
        let first = driver.machine.takeBody()
        #expect(first.bytes.allBytes == framed([2]) && !first.ended)
        _ = driver.finish(.ok)
        let last = driver.machine.takeBody()
        #expect(last.bytes.allBytes == endStreamEnvelope(.ok) && last.ended)
    }
}

/// An observer whose exposition is one fixed line.
private struct FixedObserver: RPCObserver {
    struct Recorder: RPCMethodRecorder {
        func finished(code: RPCStatus.Code, protocol: RPCCallProtocol, nanoseconds: Int64) {}
    }
    let needsToken: Bool
    func recorder(forMethod path: String) -> any RPCMethodRecorder { Recorder() }
    var unroutedRecorder: any RPCMethodRecorder { Recorder() }
    func connectionOpened(_ kind: RPCConnectionProtocol) {}
    func connectionClosed(_ kind: RPCConnectionProtocol) {}
    var metricsNeedToken: Bool { needsToken }
    func exposition() -> [UInt8] { Array("erdtree_up 1\n".utf8) }
}
