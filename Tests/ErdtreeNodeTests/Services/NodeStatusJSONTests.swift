import Foundation
import Testing

@testable import ErdtreeNode

/// `erdtree status --json`: one object with every StatusResponse field under its proto name.
@Suite struct NodeStatusJSONTests {
    private func object(_ status: NodeStatus) throws -> [String: Any] {
        #expect(!status.json.contains("\n"))
        let parsed = try JSONSerialization.jsonObject(with: Data(status.json.utf8))
        return try #require(parsed as? [String: Any])
    }

    @Test func everyFieldIsPresentEvenWhenZero() throws {
        let object = try object(NodeStatus())
        #expect(object.count == 28)
        #expect(object["role"] as? String == "ROLE_MASTER")
        #expect(object["last_lsn"] as? Int == 0)
        #expect(object["fenced_reason"] as? String == "")
        #expect(object["epoch"] as? Int == 1)
    }

    @Test func fieldsAreInProtoFieldNumberOrder() {
        let names = NodeStatus().jsonFields.map(\.name)
        #expect(Array(names.prefix(5)) == ["role", "replication_id", "last_lsn", "applied_lsn", "durable_lsn"])
        #expect(names.last == "buffered_request_bytes")
        #expect(Set(names).count == names.count)
    }

    @Test func valuesComeFromTheirParts() throws {
        var status = NodeStatus()
        status.identity.isMaster = false
        status.identity.masterAddress = "127.0.0.1:8080"
        status.identity.fencedReason = "heard of epoch 3 from \"n2\""
        status.positions = .init(lastLSN: 10, appliedLSN: 9, durableLSN: 8, oldestStreamableLSN: 2)
        status.lag = .init(entries: 1, ms: -1)
        status.store.keys = UInt64(Int64.max)
        status.log.segments = 3
        status.connections.closedForAbuse = 4
        let object = try object(status)
        #expect(object["role"] as? String == "ROLE_SLAVE")
        #expect(object["master_address"] as? String == "127.0.0.1:8080")
        #expect(object["fenced_reason"] as? String == "heard of epoch 3 from \"n2\"")
        #expect(object["last_lsn"] as? Int == 10)
        #expect(object["applied_lsn"] as? Int == 9)
        #expect(object["durable_lsn"] as? Int == 8)
        #expect(object["oldest_streamable_lsn"] as? Int == 2)
        #expect(object["lag_entries"] as? Int == 1)
        #expect(object["lag_ms"] as? Int == -1)
        #expect(object["keys"] as? Int == Int.max)
        #expect(object["segments"] as? Int == 3)
        #expect(object["connections_closed_for_abuse"] as? Int == 4)
    }
}
