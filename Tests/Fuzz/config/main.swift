import FuzzSupport

@testable import ErdtreeNode

// The config loader on arbitrary bytes: the first byte picks the role, the rest is the file. It
// must return a config or a ConfigError that names the file, and the same one every time (libyaml
// and Yams keep no state between documents that could leak into the next).

@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let role = Role.allCases[Int(input.takeByte()) % Role.allCases.count]
    // The loader refuses a file that is not UTF-8 before parsing it (NodeConfig.readFile).
    guard let yaml = String(validating: Array(input.takeRest()), as: UTF8.self) else { return 0 }
    let first = parse(yaml, role: role)
    let second = parse(yaml, role: role)
    fuzzCheck(first == second, "parsing the same text twice gave \(first) and then \(second)")
    if case .failure(let error) = first, case .invalidAddress = error {
    } else if case .failure(let error) = first {
        fuzzCheck(error.description.contains("fuzz.yaml"), "the error does not name the file: \(error)")
    }
    return 0
}

func parse(_ yaml: String, role: Role) -> Result<NodeConfig, ConfigError> {
    Result { () throws(ConfigError) in try NodeConfig.parse(yaml: yaml, role: role, source: "fuzz.yaml") }
}

runFuzzer(fuzzOne)
