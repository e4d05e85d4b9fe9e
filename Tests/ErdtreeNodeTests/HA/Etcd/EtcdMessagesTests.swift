import ErdtreeRPC
import NIOCore
import Testing

@testable import ErdtreeNode

/// The etcd messages without etcd: prefix ranges, and answers that do not decode, which must
/// fail the call with `.badResponse` rather than crash it.
@Suite struct EtcdMessagesTests {
    private func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }

    @Test func prefixEndIncrementsTheLastByteBelow0xff() {
        #expect(etcdPrefixEnd(Array("/a/".utf8)) == Array("/a0".utf8))
        #expect(etcdPrefixEnd([0x61, 0xff, 0xff]) == [0x62])
        #expect(etcdPrefixEnd([0xff, 0xff]) == [0], "no byte to increment: every key from the prefix on")
        #expect(etcdPrefixEnd([]) == [0], "the empty prefix: every key")
    }

    /// Field 2 (`kvs` in a RangeResponse, `watch_id`/`succeeded` elsewhere) says it is 100 bytes
    /// long and is 1: not a valid encoding of any message.
    static let truncated: [UInt8] = [0x12, 100, 0x01]

    @Test func undecodableAnswersAreBadResponses() {
        let bad = buffer(Self.truncated)
        func isBadResponse(_ body: () throws -> Void) -> Bool {
            do {
                try body()
                return false
            } catch {
                if case .badResponse = error as? EtcdError { return true }
                return false
            }
        }
        #expect(isBadResponse { _ = try EtcdRangeResponse(decoding: bad) })
        #expect(isBadResponse { try EtcdPutResponse.check(bad) })
        #expect(isBadResponse { _ = try EtcdTxnResponse(decoding: bad) })
        #expect(isBadResponse { _ = try EtcdLeaseGrantResponse(decoding: bad) })
        #expect(isBadResponse { try EtcdLeaseRevokeResponse.check(bad) })
        #expect(isBadResponse { _ = try EtcdLeaseKeepAliveResponse(decoding: bad) })
        #expect(isBadResponse { _ = try EtcdWatchResponse(decoding: bad) })
    }

    @Test func aWatchEventWithoutItsKeyValueIsABadResponse() {
        // WatchResponse.events (11) holding an Event with only type = DELETE (field 1).
        let response = buffer(RawProto.bytesField(11, [0x08, 0x01]))
        #expect(throws: EtcdError.badResponse("etcdserverpb.WatchResponse has an event without its key-value")) {
            _ = try EtcdWatchResponse(decoding: response)
        }
    }

    @Test func aWatchEventOfUnknownTypeIsABadResponse() {
        // An Event of type 7 with a key-value (field 2) holding key "k".
        let event: [UInt8] = [0x08, 0x07] + RawProto.bytesField(2, RawProto.bytesField(1, [0x6b]))
        #expect(throws: EtcdError.badResponse("etcdserverpb.WatchResponse has an event of unknown type 7")) {
            _ = try EtcdWatchResponse(decoding: buffer(RawProto.bytesField(11, event)))
        }
    }

    @Test func aLeaseGrantThatNamesAnErrorIsABadResponse() {
        // LeaseGrantResponse.ID = 5 (field 2), error = "no" (field 4).
        let response = buffer([0x10, 0x05] + RawProto.bytesField(4, Array("no".utf8)))
        #expect(throws: EtcdError.badResponse("etcd granted no lease: no")) {
            _ = try EtcdLeaseGrantResponse(decoding: response)
        }
    }

    @Test func aTxnAnswerOpOfUnknownKindIsABadResponse() {
        // TxnResponse.succeeded = true (2), responses (3) holding a ResponseOp with only field 4,
        // the nested transaction api/etcd leaves out.
        let response = buffer([0x10, 0x01] + RawProto.bytesField(3, RawProto.bytesField(4, [])))
        #expect(throws: EtcdError.badResponse("etcdserverpb.TxnResponse has a response op of unknown kind 0")) {
            _ = try EtcdTxnResponse(decoding: response)
        }
    }

    @Test func etcdsLeaseNotFoundIsLeaseExpiredForTheLeaseNamed() {
        let notFound = RPCStatus(.notFound, "etcdserver: requested lease not found")
        #expect(EtcdClient.error(notFound, method: .put, lease: 7, closed: false) == .leaseExpired(7))
        #expect(
            EtcdClient.error(notFound, method: .put, lease: 0, closed: false)
                == .failed(method: "KV/Put", status: notFound), "a call that names no lease")
        #expect(EtcdClient.error(notFound, method: .put, lease: 7, closed: true) == .closed)
    }
}
