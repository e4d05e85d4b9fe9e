import NIOCore
import NIOPosix
import Testing

@testable import ErdtreeRPC

/// RPCServer and RPCClient talking over real loopback sockets: every call shape, deadlines,
/// cancellation, limits, concurrency on one connection, and graceful shutdown.
@Suite struct RPCServerClientTests {
    // MARK: Call shapes

    @Test func unaryEchoRoundTrips() async throws {
        try await withTestServer { server, client in
            let text = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(string: "hello, erdtree"))
            #expect(text.allBytes == Array("hello, erdtree".utf8))

            let binary = (0...255).map(UInt8.init)
            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(bytes: binary))
            #expect(echoed.allBytes == binary)
        }
    }

    @Test func emptyRequestMessageGetsAnEmptyResponseMessage() async throws {
        try await withTestServer { server, client in
            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer())
            #expect(echoed.readableBytes == 0)
        }
    }

    @Test func unknownMethodIsUnimplementedNamingThePath() async throws {
        try await withTestServer { server, client in
            let status = await statusOf {
                try await client.unary(path: "/erdtree.test.Echo/Missing", request: ByteBuffer(string: "x"))
            }
            #expect(status?.code == .unimplemented)
            #expect(status?.message.contains("/erdtree.test.Echo/Missing") == true, "\(String(describing: status))")

            // The connection is fine afterwards.
            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(string: "still here"))
            #expect(echoed.allBytes == Array("still here".utf8))
        }
    }

    @Test func serverStreamingDeliversNMessagesInOrderThenOK() async throws {
        try await withTestServer { server, client in
            let (messages, status) = await client.collect(path: TestRoutes.count, requests: [.uint32(50)])
            #expect(status == .ok)
            #expect(messages.map { $0.getInteger(at: $0.readerIndex, as: UInt32.self) } == (0..<50).map { $0 })
        }
    }

    @Test func serverStreamingOfNothingIsJustOK() async throws {
        try await withTestServer { server, client in
            let (messages, status) = await client.collect(path: TestRoutes.count, requests: [.uint32(0)])
            #expect(status == .ok)
            #expect(messages.isEmpty)
        }
    }

    @Test func serverStreamingManyMessagesSurvivesFlowControl() async throws {
        try await withTestServer { server, client in
            let (messages, status) = await client.collect(path: TestRoutes.count, requests: [.uint32(20_000)])
            #expect(status == .ok)
            #expect(messages.count == 20_000)
            let inOrder = messages.enumerated().allSatisfy { index, message in
                message.getInteger(at: message.readerIndex, as: UInt32.self) == UInt32(index)
            }
            #expect(inOrder)
        }
    }

    @Test func bidirectionalEchoAnswersEachMessageBeforeTheNextIsSent() async throws {
        try await withTestServer { server, client in
            let call = StreamingCall(client: client, path: TestRoutes.bidi)
            for i in 0..<5 {
                call.call.send(ByteBuffer(string: "ping \(i)"))
                guard case .message(let echo)? = await call.next() else {
                    Issue.record("no echo for ping \(i)")
                    return
                }
                #expect(echo.allBytes == Array("ping \(i)".utf8))
            }
            call.call.closeSend()
            let (rest, status) = await call.rest()
            #expect(rest.isEmpty)
            #expect(status == .ok)
        }
    }

    @Test func bidirectionalEchoOfAPipelinedBurstKeepsOrder() async throws {
        try await withTestServer { server, client in
            let requests = (0..<300).map { ByteBuffer(string: "message \($0)") }
            let (messages, status) = await client.collect(path: TestRoutes.bidi, requests: requests)
            #expect(status == .ok)
            #expect(messages.map(\.allBytes) == requests.map(\.allBytes))
        }
    }

    @Test func serverFinishingABidirectionalCallEarlyEndsItForTheClient() async throws {
        try await withTestServer { server, client in
            // The client never half-closes: the server's trailers alone must end the call.
            let call = StreamingCall(client: client, path: TestRoutes.finishEarly, timeout: patience(.seconds(5)))
            call.call.send(ByteBuffer(string: "first"))
            let (messages, status) = await call.rest()
            #expect(messages.isEmpty)
            #expect(status == RPCStatus(.aborted, "one message is enough"))

            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(string: "next"))
            #expect(echoed.allBytes == Array("next".utf8))
        }
    }

    @Test func handlerAnsweringFromAnotherThreadIsDelivered() async throws {
        try await withTestServer { server, client in
            let response = try await client.unary(path: TestRoutes.slow, request: .uint32(50))
            #expect(response.allBytes == [0, 0, 0, 50])
        }
    }

    // MARK: Deadlines and cancellation

    @Test func deadlineEndsASilentCallAndCancelsItsHandler() async throws {
        try await withTestServer { server, client in
            let status = await statusOf {
                try await client.unary(
                    path: TestRoutes.silent, request: ByteBuffer(string: "x"), timeout: .milliseconds(200))
            }
            #expect(status?.code == .deadlineExceeded, "\(String(describing: status))")
            #expect(await eventually { server.probe.cancelled == 1 }, "the handler's onCancel did not fire")
            #expect(server.probe.started == 1)

            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(string: "next"))
            #expect(echoed.allBytes == Array("next".utf8))
        }
    }

    @Test func clientCancelResetsTheStreamAndCancelsTheHandler() async throws {
        try await withTestServer { server, client in
            let call = StreamingCall(client: client, path: TestRoutes.silent)
            call.call.send(ByteBuffer(string: "x"))
            call.call.closeSend()
            #expect(await eventually { server.probe.started == 1 }, "the handler never started")

            call.call.cancel()
            let (messages, status) = await call.rest()
            #expect(messages.isEmpty)
            #expect(status?.code == .cancelled)
            #expect(await eventually { server.probe.cancelled == 1 }, "the handler's onCancel did not fire")

            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(string: "next"))
            #expect(echoed.allBytes == Array("next".utf8))
        }
    }

    @Test func callThatFinishesInTimeIsNotCancelled() async throws {
        try await withTestServer { server, client in
            let response = try await client.unary(
                path: TestRoutes.slow, request: .uint32(20), timeout: patience(.seconds(5)))
            #expect(response.allBytes == [0, 0, 0, 20])
            // Give a wrongly scheduled cancellation the chance to show up.
            try await Task.sleep(for: .milliseconds(50))
            #expect(server.probe.cancelled == 0)
        }
    }

    // MARK: Limits

    @Test func requestOverTheLimitIsResourceExhaustedAndTheConnectionGoesOn() async throws {
        try await withTestServer(limits: RPCServer.Limits(maxMessageBytes: 1024)) { server, client in
            let status = await statusOf {
                try await client.unary(
                    path: TestRoutes.echo, request: ByteBuffer(bytes: Array(repeating: 1, count: 1025)))
            }
            #expect(status?.code == .resourceExhausted, "\(String(describing: status))")
            #expect(
                status?.message.contains("1024") == true,
                "the message does not name the limit: \(String(describing: status))")

            let atLimit = Array(repeating: UInt8(2), count: 1024)
            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(bytes: atLimit))
            #expect(echoed.allBytes == atLimit)
        }
    }

    @Test func hugeRequestIsRefusedWithoutWaitingForItsBody() async throws {
        try await withTestServer(limits: RPCServer.Limits(maxMessageBytes: 1024)) { server, client in
            // Announce 1 GiB but send only the prefix: the answer must come from the prefix alone.
            let call = StreamingCall(client: client, path: TestRoutes.bidi, timeout: patience(.seconds(5)))
            var prefixOnly = ByteBuffer()
            prefixOnly.writeBytes([0, 0x40, 0, 0, 0])
            sendRawBytes(prefixOnly, on: call.call)
            let (_, status) = await call.rest()
            #expect(status?.code == .resourceExhausted, "\(String(describing: status))")
            #expect(status?.message.contains("1024") == true)
        }
    }

    @Test func responseOverTheClientLimitIsResourceExhausted() async throws {
        try await withTestServer { server, _ in
            let client = try await server.connect(maxMessageBytes: 100)
            let status = await statusOf {
                try await client.unary(
                    path: TestRoutes.echo, request: ByteBuffer(bytes: Array(repeating: 3, count: 101)))
            }
            #expect(status?.code == .resourceExhausted, "\(String(describing: status))")
            #expect(status?.message.contains("100") == true)

            let echoed = try await client.unary(path: TestRoutes.echo, request: ByteBuffer(bytes: [4]))
            #expect(echoed.allBytes == [4])
            await client.close()
        }
    }

    @Test func messageOfTheDefaultLimitRoundTrips() async throws {
        try await withTestServer { server, client in
            var payload = ByteBuffer(repeating: 0x5A, count: 4 << 20)
            payload.setInteger(UInt64(0x0102_0304_0506_0708), at: 0)
            payload.setInteger(UInt64(0x1112_1314_1516_1718), at: payload.readableBytes - 8)
            let echoed = try await client.unary(path: TestRoutes.echo, request: payload)
            #expect(echoed.readableBytes == payload.readableBytes)
            #expect(echoed == payload)
        }
    }

    // MARK: Malformed requests

    @Test func unaryCallWithTwoMessagesIsInvalidArgument() async throws {
        try await withTestServer { server, client in
            let (messages, status) = await client.collect(
                path: TestRoutes.echo, requests: [ByteBuffer(string: "one"), ByteBuffer(string: "two")])
            #expect(messages.isEmpty)
            #expect(status.code == .invalidArgument)
            #expect(status.message.contains("one request message"), "\(status)")
        }
    }

    @Test func unaryCallWithNoMessageIsInvalidArgument() async throws {
        try await withTestServer { server, client in
            let (messages, status) = await client.collect(path: TestRoutes.echo, requests: [])
            #expect(messages.isEmpty)
            #expect(status.code == .invalidArgument)
            #expect(status.message.contains(TestRoutes.echo), "\(status)")
        }
    }

    @Test func requestEndingInsideAMessageIsInvalidArgumentSayingHowFarItGot() async throws {
        try await withTestServer { server, client in
            let call = StreamingCall(client: client, path: TestRoutes.echo, timeout: patience(.seconds(5)))
            // A prefix announcing 10 bytes, then only 3 of them, then the end of the request.
            sendRawBytes(ByteBuffer(bytes: [0, 0, 0, 0, 10, 1, 2, 3]), on: call.call)
            call.call.closeSend()
            let (messages, status) = await call.rest()
            #expect(messages.isEmpty)
            #expect(status?.code == .invalidArgument)
            #expect(status?.message.contains("3 of 10 message bytes") == true, "\(String(describing: status))")
        }
    }

    // MARK: Concurrency

    @Test func twoHundredConcurrentCallsOnOneConnectionAreEachAnsweredCorrectly() async throws {
        try await withTestServer { server, client in
            let answers = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
                for i in 0..<200 {
                    group.addTask {
                        // Mix immediate and cross-thread answers so completions interleave.
                        if i % 4 == 0 {
                            var request = ByteBuffer.uint32(UInt32(i % 7))
                            request.writeString("call \(i)")
                            return (i, try await client.unary(path: TestRoutes.slow, request: request).allBytes)
                        }
                        return (
                            i,
                            try await client.unary(path: TestRoutes.echo, request: ByteBuffer(string: "call \(i)"))
                                .allBytes
                        )
                    }
                }
                var answers: [Int: [UInt8]] = [:]
                for try await (i, bytes) in group { answers[i] = bytes }
                return answers
            }
            #expect(answers.count == 200)
            for i in 0..<200 {
                let text = Array("call \(i)".utf8)
                let expected = i % 4 == 0 ? [0, 0, 0, UInt8(i % 7)] + text : text
                #expect(answers[i] == expected, "call \(i) got another call's answer")
            }
        }
    }

    @Test func severalClientsAreServedAtOnce() async throws {
        try await withTestServer { server, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for c in 0..<8 {
                    group.addTask {
                        let client = try await server.connect()
                        for i in 0..<20 {
                            let echoed = try await client.unary(
                                path: TestRoutes.echo, request: ByteBuffer(string: "\(c)/\(i)"))
                            #expect(echoed.allBytes == Array("\(c)/\(i)".utf8))
                        }
                        await client.close()
                    }
                }
                try await group.waitForAll()
            }
        }
    }

    // MARK: Shutdown

    @Test func gracefulShutdownLetsTheCallInFlightFinishAndRefusesNewConnections() async throws {
        let server = try await TestServer.start()
        let client = try await server.connect()
        let slow = Task { try await client.unary(path: TestRoutes.slow, request: .uint32(300)) }
        #expect(await eventually { server.probe.started == 1 }, "the slow call never reached its handler")

        let shutdownReturned = LockedBox(false)
        let shutdown = Task {
            await server.server.shutdownGracefully(gracePeriod: patience(.seconds(10)))
            shutdownReturned.mutate { $0 = true }
        }
        let response = try await slow.value
        #expect(response.allBytes == [0, 0, 1, 44])
        #expect(server.probe.cancelled == 0)

        // Once its last call is done the connection closes at once, not at the end of the
        // 10-second grace period.
        #expect(
            await eventually(timeout: .seconds(5)) { shutdownReturned.value },
            "shutdown did not return once the drained connection was idle")
        await shutdown.value

        await #expect(throws: (any Error).self, "a connection was accepted after shutdown") {
            let late = try await RPCClient.connect(host: "127.0.0.1", port: server.port, group: TestServer.group)
            await late.close()
        }
        let status = await statusOf {
            try await client.unary(
                path: TestRoutes.echo, request: ByteBuffer(string: "late"), timeout: patience(.seconds(2)))
        }
        #expect(status?.code == .unavailable, "a call on the drained connection got \(String(describing: status))")
        await client.close()
    }

    @Test func shutdownWithIdleConnectionsReturns() async throws {
        let server = try await TestServer.start()
        let clients = [try await server.connect(), try await server.connect()]
        _ = try await clients[0].unary(path: TestRoutes.echo, request: ByteBuffer(string: "x"))
        await server.server.shutdownGracefully(gracePeriod: .seconds(10))
        await server.server.shutdownGracefully(gracePeriod: .seconds(10))  // again: a no-op
        for client in clients { await client.close() }
    }
}

// MARK: Helpers

/// Starts a test server and one client, runs `body`, then closes both, also when `body` throws.
private func withTestServer(
    limits: RPCServer.Limits = RPCServer.Limits(),
    _ body: (TestServer, RPCClient) async throws -> Void
) async throws {
    let server = try await TestServer.start(limits: limits)
    let client: RPCClient
    do {
        client = try await server.connect()
    } catch {
        await server.stop()
        throw error
    }
    do {
        try await body(server, client)
    } catch {
        await client.close()
        await server.stop()
        throw error
    }
    await client.close()
    await server.stop()
}

/// The status a call failed with, or nil when it succeeded or threw something else.
private func statusOf(_ body: () async throws -> ByteBuffer) async -> RPCStatus? {
    do {
        _ = try await body()
        return nil
    } catch let status as RPCStatus {
        return status
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// Puts `bytes` on the call's stream as they are, without a gRPC length prefix, so a test
/// can send a prefix whose body never comes.
private func sendRawBytes(_ bytes: ByteBuffer, on call: ClientCall) {
    call.eventLoop.execute {
        var bytes = bytes
        call.outbound.writeBuffer(&bytes)
        call.connection?.callHasOutput(call)
    }
}
