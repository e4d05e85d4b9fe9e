import NIOCore

/// Turns one method's messages between the binary protobuf encoding its handler speaks and
/// Connect's JSON codec.
///
/// ErdtreeRPC carries messages as opaque bytes and knows no schema; whoever registers a route
/// supplies its transcoder (ErdtreeProtobuf builds them from the descriptors compiled into the
/// binary), as grpc-swift's `GRPCProtobuf` plugs a serializer into `GRPCCore`. Called on the
/// call's event loop, once per JSON message.
public protocol MessageTranscoder: Sendable {
    /// The binary encoding of a JSON request document.
    /// - Throws: INVALID_ARGUMENT naming what is wrong with the document.
    func binaryRequest(fromJSON json: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer

    /// The JSON text of a binary response message.
    /// - Throws: INTERNAL when the bytes are not a message of the response type.
    func jsonResponse(fromBinary message: ByteBuffer, allocator: ByteBufferAllocator) throws(RPCStatus) -> ByteBuffer
}

/// What the schema says about one method, for the transports: how to transcode its messages
/// and whether Connect may call it with GET.
public struct RPCMethodDescription: Sendable {
    /// `/package.Service/Method`.
    public var path: String
    /// nil: the method is served as binary only (`application/proto`, gRPC).
    public var transcoder: (any MessageTranscoder)?
    /// Marked `idempotency_level = NO_SIDE_EFFECTS`: Connect clients may call it with GET.
    public var noSideEffects: Bool

    public init(path: String, transcoder: (any MessageTranscoder)?, noSideEffects: Bool) {
        self.path = path
        self.transcoder = transcoder
        self.noSideEffects = noSideEffects
    }
}
