import NIOCore

@testable import ErdtreeRPC

/// A stand-in for the schema layer (ErdtreeProtobuf is not a dependency of these tests): JSON
/// requests reach the handler as their own bytes, binary answers leave as `{"bytes":N}`. A
/// request of `{bad` is refused, as a parser would.
struct EchoTranscoder: MessageTranscoder {
    func binaryRequest(fromJSON json: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        if json.allBytes.starts(with: Array("{bad".utf8)) {
            throw RPCStatus(.invalidArgument, "malformed JSON at byte 1")
        }
        return json
    }

    func jsonResponse(fromBinary message: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer {
        ByteBuffer(string: #"{"bytes":\#(message.readableBytes)}"#)
    }
}

/// One method of each shape, for driving the call state machine and the connection handlers.
enum MachineRoutes {
    static let unary = "/t.S/Unary"
    static let getter = "/t.S/Getter"
    static let stream = "/t.S/Stream"
    static let bidi = "/t.S/Bidi"

    static let router: RPCRouter = {
        var router = RPCRouter()
        router.register(unary, .unary { request, call in call.respond(request) })
        router.register(getter, .unary { request, call in call.respond(request) })
        router.register(stream, .serverStreaming { request, call in call.respond(request) })
        router.register(bidi, .bidirectional { call in call.onRequestEnd { call.finish(.ok) } })
        router.describe(
            [unary, getter, stream, bidi].map {
                RPCMethodDescription(path: $0, transcoder: EchoTranscoder(), noSideEffects: $0 == getter)
            })
        return router
    }()
}

/// What an action asked for, comparable in tests (actions carry handler closures).
enum ActionSummary: Equatable {
    case none
    case armDeadline(nanos: Int64)
    case startBidirectional(deadlineNanos: Int64?)
    case startUnary(request: [UInt8], deadlineNanos: Int64?)
    case deliver([UInt8])
    case deliverEnd
    case fail(RPCStatus)
    case writeHead(ResponseHead, hasBody: Bool)
    case resume
    case probeHealth
    case exposeMetrics

    init(_ action: ServerStreamStateMachine.Action) {
        switch action {
        case .none: self = .none
        case .armDeadline(let nanos): self = .armDeadline(nanos: nanos)
        case .start(.bidirectional, let deadline): self = .startBidirectional(deadlineNanos: deadline)
        case .start(.unary(_, let request), let deadline):
            self = .startUnary(request: request.allBytes, deadlineNanos: deadline)
        case .deliver(let message): self = .deliver(message.allBytes)
        case .deliverEnd: self = .deliverEnd
        case .fail(let status): self = .fail(status)
        case .writeHead(let head, let hasBody): self = .writeHead(head, hasBody: hasBody)
        case .resume: self = .resume
        case .probeHealth: self = .probeHealth
        case .exposeMetrics: self = .exposeMetrics
        }
    }
}

/// A state machine and the events a transport would feed it, with what each returned.
final class MachineDriver {
    var machine: ServerStreamStateMachine

    init(_ transport: ServerTransport, maxMessageBytes: Int = 1024) {
        machine = ServerStreamStateMachine(
            transport: transport, maxMessageBytes: maxMessageBytes, allocator: ByteBufferAllocator())
    }

    /// Feeds header fields one at a time, as nghttp2 does, then completes the head.
    func head(_ fields: [(String, String)]) -> ActionSummary {
        for (name, value) in fields {
            var name = name
            var value = value
            name.withUTF8 { name in
                value.withUTF8 { value in
                    machine.receiveHeader(
                        name: UnsafeRawBufferPointer(name), value: UnsafeRawBufferPointer(value),
                        router: MachineRoutes.router)
                }
            }
        }
        return ActionSummary(machine.receiveHead())
    }

    /// Request body bytes, and the actions of the messages they complete.
    func data(_ bytes: [UInt8]) -> [ActionSummary] {
        bytes.withUnsafeBytes { machine.receiveData($0) }
        var actions: [ActionSummary] = []
        while let action = machine.nextRequestMessage() { actions.append(ActionSummary(action)) }
        return actions
    }

    /// The stream goes away; whether the handler is to be cancelled.
    func close() -> Bool { machine.close() }

    func end() -> ActionSummary { ActionSummary(machine.receiveEnd()) }
    func send(_ bytes: [UInt8]) -> ActionSummary { ActionSummary(machine.send(ByteBuffer(bytes: bytes))) }
    func respond(_ bytes: [UInt8]) -> ActionSummary {
        ActionSummary(machine.respond(ByteBuffer(bytes: bytes)))
    }
    func finish(_ status: RPCStatus) -> ActionSummary { ActionSummary(machine.finish(status)) }

    /// Everything HTTP/2 would pull from the body, and how it ended.
    func pullBody() -> (bytes: [UInt8], end: ResponseEnd?) {
        var bytes: [UInt8] = []
        var frame = [UInt8](repeating: 0, count: 16)
        while true {
            let chunk = frame.withUnsafeMutableBytes { machine.readBody(into: $0) }
            switch chunk {
            case .deferred: return (bytes, nil)
            case .data(let count, let end):
                bytes += frame.prefix(count)
                if let end { return (bytes, end) }
            }
        }
    }
}

/// Header fields of a gRPC POST.
func grpcHead(_ path: String, _ extra: [(String, String)] = []) -> [(String, String)] {
    [(":method", "POST"), (":path", path), ("content-type", "application/grpc"), ("te", "trailers")] + extra
}

/// Header fields of a request with `method`, `path` and, when given, `contentType`.
func requestHead(_ method: String, _ path: String, contentType: String? = nil, _ extra: [(String, String)] = [])
    -> [(String, String)]
{
    [(":method", method), (":path", path)] + (contentType.map { [("content-type", $0)] } ?? []) + extra
}

/// A Connect end-stream envelope's JSON, for comparing.
func endStreamEnvelope(_ status: RPCStatus) -> [UInt8] {
    var out = ByteBuffer()
    ConnectStreaming.endStream(status, into: &out)
    return out.allBytes
}
