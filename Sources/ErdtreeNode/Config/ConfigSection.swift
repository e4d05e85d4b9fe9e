internal import Yams

/// One YAML mapping of a config file, read key by key with errors that name the dotted path.
///
/// The readers return `nil` for an absent key so the caller keeps its default, and throw for a
/// key that is present but unusable: `wrongType` when the YAML shape is wrong (a list where a
/// number belongs, or no value at all), `invalidValue` when the text is out of range or unreadable.
struct ConfigSection {
    /// Dotted path of this mapping; "" for the document.
    let path: String
    let file: String
    private let entries: [(key: String, value: Node)]

    /// Wraps the document root; an empty document is an empty mapping, so every key defaults.
    init(document: Node?, file: String) throws(ConfigError) {
        try self.init(node: document, path: "", file: file)
    }

    private init(node: Node?, path: String, file: String) throws(ConfigError) {
        self.path = path
        self.file = file
        guard let node, !Self.isNull(node) else {
            // `wal:` with nothing under it reads as "no overrides", like an absent section.
            entries = []
            return
        }
        guard case .mapping(let mapping) = node else {
            throw .wrongType(key: path, expected: "a mapping of keys", found: Self.describe(node), file: file)
        }
        var entries: [(key: String, value: Node)] = []
        for (keyNode, value) in mapping {
            guard case .scalar(let scalar) = keyNode else {
                let key = Self.describe(keyNode)
                throw .unknownKey(path: path.isEmpty ? key : "\(path).\(key)", file: file)
            }
            entries.append((scalar.string, value))
        }
        self.entries = entries
    }

    /// Throws for the first key (in file order) that the format does not define at this level.
    func rejectUnknownKeys() throws(ConfigError) {
        let known = ConfigSchema.keys(in: path)
        if let unknown = entries.first(where: { !known.contains($0.key) }) {
            throw .unknownKey(path: dotted(unknown.key), file: file)
        }
    }

    func contains(_ key: String) -> Bool {
        entries.contains { $0.key == key }
    }

    func dotted(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// The nested mapping under `key`, with its own keys checked.
    func section(_ key: String) throws(ConfigError) -> ConfigSection? {
        guard let node = value(key) else { return nil }
        let section = try ConfigSection(node: node, path: dotted(key), file: file)
        try section.rejectUnknownKeys()
        return section
    }

    /// The scalar text under `key`, whatever YAML type it resolved to (`8080` is text "8080").
    func text(_ key: String) throws(ConfigError) -> String? {
        guard let node = value(key) else { return nil }
        guard case .scalar(let scalar) = node, !Self.isNull(node) else {
            throw .wrongType(key: dotted(key), expected: "a single value", found: Self.describe(node), file: file)
        }
        return scalar.string
    }

    /// A list of non-empty strings (a YAML sequence of scalars), at least one.
    func stringList(_ key: String) throws(ConfigError) -> [String]? {
        guard let node = value(key) else { return nil }
        guard case .sequence(let sequence) = node else {
            throw .wrongType(key: dotted(key), expected: "a list", found: Self.describe(node), file: file)
        }
        var items: [String] = []
        for item in sequence {
            guard case .scalar(let scalar) = item, !ConfigUnits.trimmed(scalar.string).isEmpty else {
                throw .wrongType(
                    key: dotted(key), expected: "a list of non-empty values", found: Self.describe(item), file: file)
            }
            items.append(ConfigUnits.trimmed(scalar.string))
        }
        guard !items.isEmpty else { throw invalid(key, "[]", "must name at least one") }
        return items
    }

    /// A list of mappings (`auth.tokens`), each with its own keys checked and its errors naming
    /// it by index (`auth.tokens[1].role`).
    func sectionList(_ key: String) throws(ConfigError) -> [ConfigSection]? {
        guard let node = value(key) else { return nil }
        guard case .sequence(let sequence) = node else {
            throw .wrongType(key: dotted(key), expected: "a list", found: Self.describe(node), file: file)
        }
        var sections: [ConfigSection] = []
        for (index, item) in sequence.enumerated() {
            let section = try ConfigSection(node: item, path: "\(dotted(key))[\(index)]", file: file)
            try section.rejectUnknownKeys()
            sections.append(section)
        }
        return sections
    }

    /// A non-empty string without surrounding whitespace.
    func nonEmptyString(_ key: String) throws(ConfigError) -> String? {
        guard let raw = try text(key) else { return nil }
        let value = ConfigUnits.trimmed(raw)
        guard !value.isEmpty else { throw invalid(key, raw, "must not be empty") }
        return value
    }

    /// A whole number in `range`; underscores between digits are allowed (`1_000_000`).
    func integer(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let raw = try text(key) else { return nil }
        let trimmed = ConfigUnits.trimmed(raw)
        let negative = trimmed.hasPrefix("-")
        let digits = negative || trimmed.hasPrefix("+") ? trimmed.dropFirst() : Substring(trimmed)
        guard let magnitude = ConfigUnits.parseDigits(digits) else {
            throw .wrongType(key: dotted(key), expected: "a whole number", found: "'\(raw)'", file: file)
        }
        let value = negative ? -magnitude : magnitude
        guard value >= Int64(range.lowerBound), value <= Int64(range.upperBound) else {
            let bound =
                range.upperBound == Int.max
                ? "at least \(range.lowerBound)" : "between \(range.lowerBound) and \(range.upperBound)"
            throw invalid(key, raw, "must be \(bound)")
        }
        return Int(value)
    }

    /// One of a fixed set of words (`log.level`), any case; the error lists them all in `T`'s order.
    func oneOf<T: RawRepresentable<String> & CaseIterable>(_ key: String, _: T.Type) throws(ConfigError) -> T? {
        guard let raw = try text(key) else { return nil }
        guard let value = T(rawValue: ConfigUnits.trimmed(raw).lowercased()) else {
            throw invalid(key, raw, "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return value
    }

    /// A byte size (`64KB`, `100MB`, `1GB`, or plain bytes) in `range`.
    func byteSize(_ key: String, in range: ClosedRange<Int64>) throws(ConfigError) -> Int64? {
        guard let raw = try text(key) else { return nil }
        guard let bytes = ConfigUnits.byteSize(raw) else {
            throw invalid(key, raw, "expected a size such as 65536, 64KB, 100MB or 1GB (KB = 1024 bytes)")
        }
        guard bytes >= range.lowerBound else {
            throw invalid(key, raw, "must be at least \(Self.formatSize(range.lowerBound))")
        }
        guard bytes <= range.upperBound else {
            throw invalid(key, raw, "must be at most \(Self.formatSize(range.upperBound))")
        }
        return bytes
    }

    /// A duration greater than zero (`500us`, `100ms`, `1s`, `2m`, `1h`).
    func positiveDuration(_ key: String) throws(ConfigError) -> Duration? {
        guard let raw = try text(key) else { return nil }
        return try positiveDuration(key, raw)
    }

    func positiveDuration(_ key: String, _ raw: String) throws(ConfigError) -> Duration {
        guard let duration = ConfigUnits.duration(raw) else {
            throw invalid(key, raw, "expected a duration such as 500us, 100ms, 1s, 2m or 1h")
        }
        guard duration > .zero else { throw invalid(key, raw, "must be greater than zero") }
        return duration
    }

    /// For a rule between two keys, blamed on `key`: if the file did not set it, the error says its
    /// default is what conflicts, so the operator knows to set it rather than hunt for it.
    func invalidCombination(_ key: String, bytes: Int64, _ reason: String) throws(ConfigError) -> ConfigError {
        if let raw = try text(key) { return invalid(key, raw, reason) }
        let shown = Self.formatSize(bytes)
        return invalid(key, shown, "\(reason); \(shown) is its default, so set it explicitly")
    }

    func invalid(_ key: String, _ value: String, _ reason: String) -> ConfigError {
        .invalidValue(key: dotted(key), value: value, reason: reason, file: file)
    }

    private func value(_ key: String) -> Node? {
        entries.first { $0.key == key }?.value
    }

    /// `65536` → "64KB": the largest binary unit that divides the size, else plain bytes.
    static func formatSize(_ bytes: Int64) -> String {
        for (shift, unit) in [(40, "TB"), (30, "GB"), (20, "MB"), (10, "KB")] {
            let scale = Int64(1) << shift
            if bytes >= scale, bytes % scale == 0 { return "\(bytes / scale)\(unit)" }
        }
        return bytes == 1 ? "1 byte" : "\(bytes) bytes"
    }

    private static func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// A phrase for an error's "but it is …".
    private static func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let scalar): return isNull(node) ? "empty" : "'\(scalar.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }
}
