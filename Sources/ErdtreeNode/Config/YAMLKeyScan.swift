// libyaml as Yams builds it: its event parser, which Yams' public API does not expose.
import CYaml

/// Finds a mapping key that is a list, a mapping or an alias, by reading libyaml's events before
/// Yams composes the text: a linear pass, bounded by libyaml's own nesting limit.
///
/// Every key of a config file is a name, so such a key is always an error, and it must be caught
/// before Yams sees it: Yams checks each mapping for duplicate keys by sorting them with `Node`'s
/// `<`, which compares two lists element by element both ways, in time exponential in their
/// depth. A 1.4 KB file of nested `? -` keys held `erdtree master --config` for minutes, one start
/// in six (found by the config fuzz harness). An alias key could name such a list.
enum YAMLKeyScan {
    struct OddKey: Equatable {
        /// 1-based, as Yams and the other config errors count.
        let line: Int
        /// "a list", "a mapping" or "an alias".
        let kind: String
    }

    /// The first key that is not a plain scalar; nil when there is none, or when the text is not
    /// valid YAML up to one (Yams then says what is wrong with it).
    static func firstOddKey(in yaml: String) -> OddKey? {
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else { return nil }
        defer { yaml_parser_delete(&parser) }
        let bytes = Array(yaml.utf8)
        return bytes.withUnsafeBufferPointer { text in
            yaml_parser_set_input_string(&parser, text.baseAddress, text.count)
            var open: [Collection] = []
            while true {
                var event = yaml_event_t()
                guard yaml_parser_parse(&parser, &event) == 1 else { return nil }
                defer { yaml_event_delete(&event) }
                let type = event.type
                if type == YAML_STREAM_END_EVENT { return nil }
                if type == YAML_SEQUENCE_END_EVENT || type == YAML_MAPPING_END_EVENT {
                    open.removeLast()
                    continue
                }
                let kind: String
                switch type {
                case YAML_SCALAR_EVENT: kind = ""
                case YAML_ALIAS_EVENT: kind = "an alias"
                case YAML_SEQUENCE_START_EVENT: kind = "a list"
                case YAML_MAPPING_START_EVENT: kind = "a mapping"
                default: continue  // stream and document starts and ends
                }
                // A node: in a mapping, keys and values take turns.
                if case .mapping(let keyNext) = open.last {
                    if keyNext, !kind.isEmpty { return OddKey(line: Int(event.start_mark.line) + 1, kind: kind) }
                    open[open.count - 1] = .mapping(keyNext: !keyNext)
                }
                if type == YAML_SEQUENCE_START_EVENT { open.append(.sequence) }
                if type == YAML_MAPPING_START_EVENT { open.append(.mapping(keyNext: true)) }
            }
        }
    }

    private enum Collection {
        case sequence
        case mapping(keyNext: Bool)
    }
}
