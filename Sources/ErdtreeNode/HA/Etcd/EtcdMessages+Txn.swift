internal import CProtobufC
internal import ErdtreeProto
import ErdtreeProtobuf
import NIOCore

// etcdserverpb.TxnRequest and TxnResponse: the compare-and-act the client's create and delete
// are built on (see EtcdMessages.swift).

/// One `etcdserverpb.Compare`, in the two forms the client uses (both EQUAL).
enum EtcdCompare {
    /// `key`'s create_revision equals `revision`; 0 holds exactly when the key does not exist.
    case createRevision(key: [UInt8], equals: Int64)
    /// `key`'s value equals `value`; false when the key does not exist.
    case value(key: [UInt8], equals: [UInt8])
}

/// One `etcdserverpb.RequestOp`.
enum EtcdRequestOp {
    case range(EtcdRangeRequest)
    case put(EtcdPutRequest)
    /// Deletes `key` (one key: no range end).
    case deleteRange(key: [UInt8])
}

/// One `etcdserverpb.ResponseOp`, in the order of the ops that ran.
enum EtcdResponseOp: Equatable {
    case range([EtcdKeyValue])
    case put
    case deleteRange(deleted: Int64)
}

/// `etcdserverpb.TxnRequest`: if every comparison holds, `success` runs, else `failure`.
struct EtcdTxnRequest {
    var compare: [EtcdCompare]
    var success: [EtcdRequestOp]
    var failure: [EtcdRequestOp]

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var arena = CArena()
        var message = Etcdserverpb__TxnRequest()
        etcdserverpb__txn_request__init(&message)
        let compares = arena.array(of: UnsafeMutablePointer<Etcdserverpb__Compare>?.self, count: compare.count)
        for (index, item) in compare.enumerated() {
            let entry = arena.make(Etcdserverpb__Compare.self) { etcdserverpb__compare__init($0) }
            entry.pointee.result = ETCDSERVERPB__COMPARE__COMPARE_RESULT__EQUAL
            switch item {
            case .createRevision(let key, let revision):
                entry.pointee.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__CREATE
                entry.pointee.key = arena.binaryData(key)
                entry.pointee.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_CREATE_REVISION
                entry.pointee.create_revision = revision
            case .value(let key, let value):
                entry.pointee.target = ETCDSERVERPB__COMPARE__COMPARE_TARGET__VALUE
                entry.pointee.key = arena.binaryData(key)
                entry.pointee.target_union_case = ETCDSERVERPB__COMPARE__TARGET_UNION_VALUE
                entry.pointee.value = arena.binaryData(value)
            }
            compares[index] = entry
        }
        message.n_compare = compare.count
        message.compare = compares
        message.n_success = success.count
        message.success = arena.requestOps(success)
        message.n_failure = failure.count
        message.failure = arena.requestOps(failure)
        return ProtobufCCodec.pack(&message, allocator: allocator)
    }
}

/// `etcdserverpb.TxnResponse`: which branch ran, and its ops' answers.
struct EtcdTxnResponse: Equatable {
    var succeeded: Bool
    var responses: [EtcdResponseOp]
}

extension EtcdTxnResponse {
    /// - Throws: `.badResponse` for an undecodable answer or an op answer of no known kind.
    init(decoding buffer: ByteBuffer) throws(EtcdError) {
        self = try decodeEtcd(
            buffer, typeName: "etcdserverpb.TxnResponse", unpack: { etcdserverpb__txn_response__unpack($0, $1, $2) }
        ) { message throws(EtcdError) in
            var responses: [EtcdResponseOp] = []
            for index in 0..<message.n_responses {
                guard let op = message.responses?[index]?.pointee else {
                    throw .badResponse("etcdserverpb.TxnResponse has a missing response op")
                }
                switch op.response_case {
                case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_RANGE:
                    responses.append(.range(op.response_range.map { EtcdRangeResponse($0.pointee).kvs } ?? []))
                case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_PUT:
                    responses.append(.put)
                case ETCDSERVERPB__RESPONSE_OP__RESPONSE_RESPONSE_DELETE_RANGE:
                    responses.append(.deleteRange(deleted: op.response_delete_range?.pointee.deleted ?? 0))
                default:
                    throw .badResponse(
                        "etcdserverpb.TxnResponse has a response op of unknown kind \(op.response_case.rawValue)")
                }
            }
            return EtcdTxnResponse(succeeded: message.succeeded != 0, responses: responses)
        }
    }
}

/// A protobuf-c `repeated RequestOp` field: an array of message pointers.
typealias EtcdRequestOpList = UnsafeMutablePointer<UnsafeMutablePointer<Etcdserverpb__RequestOp>?>

extension CArena {
    /// A protobuf-c `RequestOp*` array holding `ops`, allocated in the arena.
    mutating func requestOps(_ ops: [EtcdRequestOp]) -> EtcdRequestOpList {
        let list = array(of: UnsafeMutablePointer<Etcdserverpb__RequestOp>?.self, count: ops.count)
        for (index, op) in ops.enumerated() {
            let entry = make(Etcdserverpb__RequestOp.self) { etcdserverpb__request_op__init($0) }
            switch op {
            case .range(let request):
                let range = make(Etcdserverpb__RangeRequest.self) { etcdserverpb__range_request__init($0) }
                request.fill(&range.pointee, in: &self)
                entry.pointee.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_RANGE
                entry.pointee.request_range = range
            case .put(let request):
                let put = make(Etcdserverpb__PutRequest.self) { etcdserverpb__put_request__init($0) }
                request.fill(&put.pointee, in: &self)
                entry.pointee.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_PUT
                entry.pointee.request_put = put
            case .deleteRange(let key):
                let delete = make(Etcdserverpb__DeleteRangeRequest.self) {
                    etcdserverpb__delete_range_request__init($0)
                }
                delete.pointee.key = binaryData(key)
                entry.pointee.request_case = ETCDSERVERPB__REQUEST_OP__REQUEST_REQUEST_DELETE_RANGE
                entry.pointee.request_delete_range = delete
            }
            list[index] = entry
        }
        return list
    }
}
