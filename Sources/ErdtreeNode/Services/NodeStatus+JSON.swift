import ErdtreeRPC

extension NodeStatus {
    /// A JSON value of `json`: a string or a whole number.
    enum JSONField {
        case text(String)
        case number(Int64)
        case unsigned(UInt64)
    }

    /// Every field of `erdtree.v1.StatusResponse` with its proto name, in field-number order.
    var jsonFields: [(name: String, value: JSONField)] {
        [
            ("role", .text(identity.isMaster ? "ROLE_MASTER" : "ROLE_SLAVE")),
            ("replication_id", .text(identity.replicationID)),
            ("last_lsn", .unsigned(positions.lastLSN)),
            ("applied_lsn", .unsigned(positions.appliedLSN)),
            ("durable_lsn", .unsigned(positions.durableLSN)),
            ("master_address", .text(identity.masterAddress)),
            ("lag_entries", .unsigned(lag.entries)),
            ("lag_ms", .number(lag.ms)),
            ("keys", .unsigned(store.keys)),
            ("resident_values", .unsigned(store.residentValues)),
            ("memory_bytes", .unsigned(store.memoryBytes)),
            ("segments", .unsigned(UInt64(log.segments))),
            ("disk_bytes", .unsigned(log.diskBytes)),
            ("dead_bytes", .unsigned(log.deadBytes)),
            ("last_compaction_ms", .number(log.lastCompactionMs)),
            ("expired_reclaimed", .unsigned(store.expiredReclaimed)),
            ("version", .text(identity.version)),
            ("uptime_ms", .number(identity.uptimeMs)),
            ("disk_reads", .unsigned(store.diskReads)),
            ("compactions", .unsigned(log.compactions)),
            ("oldest_streamable_lsn", .unsigned(positions.oldestStreamableLSN)),
            ("epoch", .unsigned(identity.epoch)),
            ("divergent_records", .unsigned(identity.divergentRecords)),
            ("fenced_reason", .text(identity.fencedReason)),
            ("connections_rejected", .unsigned(connections.rejected)),
            ("connections_closed_for_abuse", .unsigned(connections.closedForAbuse)),
            ("requests_refused_for_memory", .unsigned(connections.requestsRefusedForMemory)),
            ("buffered_request_bytes", .unsigned(connections.bufferedRequestBytes)),
        ]
    }

    /// The status as one JSON object on one line, for `erdtree status --json`.
    ///
    /// Names are the proto field names (snake_case, as protoc's `preserving_proto_field_name`
    /// prints them), and every field is present even when zero or empty, so a script never has
    /// to know proto3's defaults. `role` is the enum value's name (`ROLE_MASTER`), as the proto3
    /// JSON mapping writes enums. Integers are JSON numbers, not the mapping's quoted 64-bit
    /// strings, so `jq '.last_lsn > 5'` compares numbers; no figure here nears 2^53.
    public var json: String {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (index, field) in jsonFields.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSONWriter.appendString(field.name, to: &out)
            out.append(UInt8(ascii: ":"))
            switch field.value {
            case .text(let text): JSONWriter.appendString(text, to: &out)
            case .number(let number): out.append(contentsOf: String(number).utf8)
            case .unsigned(let number): out.append(contentsOf: String(number).utf8)
            }
        }
        out.append(UInt8(ascii: "}"))
        return String(decoding: out, as: UTF8.self)
    }
}
