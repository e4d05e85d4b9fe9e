internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import NIOCore

// The Watch service's messages (see EtcdMessages.swift).

/// `etcdserverpb.WatchRequest`: create a watcher on the stream, or cancel one.
enum EtcdWatchRequest {
    /// Watch `[key, rangeEnd)` from `startRevision` (0: from now).
    case create(key: [UInt8], rangeEnd: [UInt8], startRevision: Int64)
    case cancel(watchID: Int64)

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Etcdserverpb__WatchRequest()
        etcdserverpb__watch_request__init(&message)
        switch self {
        case .create(let key, let rangeEnd, let startRevision):
            let create = arena.make(Etcdserverpb__WatchCreateRequest.self) {
                etcdserverpb__watch_create_request__init($0)
            }
            create.pointee.key = arena.binaryData(key)
            create.pointee.range_end = arena.binaryData(rangeEnd)
            create.pointee.start_revision = startRevision
            message.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CREATE_REQUEST
            message.create_request = create
        case .cancel(let watchID):
            let cancel = arena.make(Etcdserverpb__WatchCancelRequest.self) {
                etcdserverpb__watch_cancel_request__init($0)
            }
            cancel.pointee.watch_id = watchID
            message.request_union_case = ETCDSERVERPB__WATCH_REQUEST__REQUEST_UNION_CANCEL_REQUEST
            message.cancel_request = cancel
        }
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `etcdserverpb.WatchResponse`: a watcher created or canceled, or its events.
struct EtcdWatchResponse {
    var watchID: Int64
    var created: Bool
    var canceled: Bool
    /// Set when the watcher's start revision was compacted away (and it is canceled).
    var compactRevision: Int64
    var cancelReason: String
    var events: [EtcdEvent]
}

extension EtcdWatchResponse {
    /// - Throws: `.badResponse` when undecodable, or for an event of no known type or without
    ///   its key-value.
    init(decoding buffer: ByteBuffer) throws(EtcdError) {
        self = try decodeEtcd(
            buffer, typeName: "etcdserverpb.WatchResponse",
            unpack: { etcdserverpb__watch_response__unpack($0, $1, $2) }
        ) { message throws(EtcdError) in
            var events: [EtcdEvent] = []
            events.reserveCapacity(message.n_events)
            for index in 0..<message.n_events {
                guard let event = message.events?[index]?.pointee, let kv = event.kv?.pointee else {
                    throw .badResponse("etcdserverpb.WatchResponse has an event without its key-value")
                }
                let kind: EtcdEvent.Kind
                switch event.type {
                case MVCCPB__EVENT__EVENT_TYPE__PUT: kind = .put
                case MVCCPB__EVENT__EVENT_TYPE__DELETE: kind = .delete
                default:
                    throw .badResponse("etcdserverpb.WatchResponse has an event of unknown type \(event.type.rawValue)")
                }
                events.append(EtcdEvent(kind: kind, kv: EtcdKeyValue(kv)))
            }
            return EtcdWatchResponse(
                watchID: message.watch_id, created: message.created != 0, canceled: message.canceled != 0,
                compactRevision: message.compact_revision, cancelReason: ProtobufCCodec.string(message.cancel_reason),
                events: events)
        }
    }
}
