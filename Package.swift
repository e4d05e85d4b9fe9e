// swift-tools-version:6.0
import PackageDescription

// Dependencies point one way (docs/architecture.md):
// erdtree → ErdtreeNode → {ErdtreeRPC, ErdtreeProtobuf, ErdtreeWAL, ErdtreeStorage}, and erdtree → ErdtreeWAL
// (`erdtree wal dump`/`verify`); ErdtreeProtobuf → {ErdtreeRPC, ErdtreeProto → CProtobufC};
// ErdtreeRPC → {CNGHTTP2, CZlib, swift-nio-ssl}; ErdtreeWAL → CErdtreeSystem. ErdtreeRPC knows no
// protobuf-c type: ErdtreeProtobuf plugs Connect's JSON transcoders into it, as grpc-swift-protobuf plugs its
// serializers into GRPCCore. Every module's locks come from ErdtreeSync → CErdtreeSystem.

// Test hooks (crash points, injected write errors) exist only in a failpoint build, like etcd's
// gofail: `ERDTREE_FAILPOINTS=1 swift build` (and `swift test`), which `make test` runs, compiles
// the code under `#if ERDTREE_FAILPOINTS` into every target of this package. Release builds
// (`make release`, `make run`, `make bench`, deploy/Dockerfile) never set it, and a test checks
// that the release binary holds none of the hooks (tests/release).
let failpoints: [SwiftSetting] =
    Context.environment["ERDTREE_FAILPOINTS"] == "1" ? [.define("ERDTREE_FAILPOINTS")] : []

// libFuzzer harnesses (Tests/Fuzz/README.md) exist only when ERDTREE_FUZZ=1: scripts/fuzz.sh sets it and
// builds them with -sanitize=fuzzer,address into .build-fuzz, so a normal build or test never sees them.
// One row per harness, `(target, path, dependencies)` with target and path on one line: scripts/fuzz.sh
// reads the harness list (name = last path component) from these rows. Harnesses `@testable import` what they fuzz.
let fuzzHarnesses: [(target: String, path: String, dependencies: [Target.Dependency])] = [
    ("FuzzDeframer", "Tests/Fuzz/deframer", ["ErdtreeRPC", .product(name: "NIOCore", package: "swift-nio")]),
    ("FuzzProtoJSON", "Tests/Fuzz/protojson", ["ErdtreeProtobuf"]),
    ("FuzzConnectGet", "Tests/Fuzz/connect-get", ["ErdtreeRPC", .product(name: "NIOCore", package: "swift-nio")]),
    (
        "FuzzProtobuf", "Tests/Fuzz/protobuf",
        ["ErdtreeProtobuf", "ErdtreeRPC", "CProtobufC", .product(name: "NIOCore", package: "swift-nio")]
    ),
    (
        "FuzzHTTP2Settings", "Tests/Fuzz/http2-settings",
        [
            "ErdtreeRPC", .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]
    ),
    ("FuzzWAL", "Tests/Fuzz/wal", ["ErdtreeWAL", .product(name: "Logging", package: "swift-log")]),
    ("FuzzConfig", "Tests/Fuzz/config", ["ErdtreeNode"]),
    ("FuzzConnection", "Tests/Fuzz/connection", [
        "ErdtreeNode", "ErdtreeRPC", .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
    ]),
]
let fuzzTargets: [Target] =
    Context.environment["ERDTREE_FUZZ"] == "1"
    ? [
        .target(name: "CLibFuzzer", path: "Tests/Fuzz/CLibFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer"], path: "Tests/Fuzz/FuzzSupport"),
    ]
        + fuzzHarnesses.map {
            .executableTarget(name: $0.target, dependencies: ["FuzzSupport"] + $0.dependencies, path: $0.path)
        }
    : []

// A sanitizer build (`make test-sanitize`): ERDTREE_SANITIZE=thread or address instruments OUR
// targets only. `swift test --sanitize=` would instrument every dependency too (swift-nio, BoringSSL,
// Yams, ...), so each sanitizer would need its own scratch path and a full rebuild of them; with
// the flags here the dependencies stay plain and only our targets rebuild when the sanitizer
// changes. Uninstrumented code is not checked, and its pthread and atomic-free hand-overs (NIO's
// locks are pthread mutexes) are still seen through TSan's interceptors. lock.c is in
// CErdtreeSystem, so the C target is instrumented too: TSan must see its futex hand-overs.
let sanitizer = Context.environment["ERDTREE_SANITIZE"] ?? ""
let sanitizeSwift: [SwiftSetting] = sanitizer.isEmpty ? [] : [.unsafeFlags(["-sanitize=\(sanitizer)"])]
let sanitizeC: [CSetting] = sanitizer.isEmpty ? [] : [.unsafeFlags(["-fsanitize=\(sanitizer)"])]
// The test bundle and the executable link the sanitizer's runtime; SwiftPM links with swiftc.
let sanitizeLink: [LinkerSetting] = sanitizer.isEmpty ? [] : [.unsafeFlags(["-sanitize=\(sanitizer)"])]
let swiftSettings = failpoints + sanitizeSwift

let package = Package(
    name: "erdtree",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "erdtree", targets: ["erdtree"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
    ],
    targets: [
        // C libraries from Debian packages, found through pkg-config.
        .systemLibrary(
            name: "CNGHTTP2",
            pkgConfig: "libnghttp2",
            providers: [.apt(["libnghttp2-dev"])]
        ),
        .systemLibrary(
            name: "CProtobufC",
            pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // protoc-gen-c output for api/ (committed; `make generate` rewrites it)
        // and the FileDescriptorSet that reflection serves.
        .target(
            name: "ErdtreeProto",
            dependencies: ["CProtobufC"],
            cSettings: sanitizeC
        ),
        .target(
            name: "ErdtreeRPC",
            dependencies: [
                "ErdtreeSync",
                "CNGHTTP2",
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        // Everything protobuf-c: arenas, the wire reader, the codec, the proto3 JSON mapping, the descriptor
        // index and the per-method table built from it.
        .target(
            name: "ErdtreeProtobuf",
            dependencies: [
                "ErdtreeSync",
                "ErdtreeRPC",
                "ErdtreeProto",
                "CProtobufC",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        // The lock every module uses, one ThreadSanitizer sees (Locked.swift says why not
        // `Synchronization.Mutex`); its futex calls are in CErdtreeSystem.
        .target(
            name: "ErdtreeSync",
            dependencies: ["CErdtreeSystem"],
            swiftSettings: sanitizeSwift,
            linkerSettings: sanitizeLink
        ),
        // Linux calls Glibc does not export (preadv2 needs _GNU_SOURCE), and the CRC-32C instruction.
        .target(
            name: "CErdtreeSystem",
            dependencies: [],
            cSettings: sanitizeC,
            linkerSettings: sanitizeLink
        ),
        .target(
            name: "ErdtreeWAL",
            dependencies: [
                "ErdtreeSync",
                "CErdtreeSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .target(
            name: "ErdtreeStorage",
            dependencies: ["ErdtreeSync"],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .target(
            name: "ErdtreeNode",
            dependencies: [
                "ErdtreeSync",
                "ErdtreeRPC",
                "ErdtreeProtobuf",
                "ErdtreeWAL",
                "ErdtreeStorage",
                "ErdtreeProto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                // The registry and the text exposition of `/metrics`; ErdtreeRPC and ErdtreeWAL
                // only report events through protocols, so they stay free of it.
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .executableTarget(
            name: "erdtree",
            dependencies: [
                "ErdtreeNode",
                "ErdtreeRPC",
                // `erdtree wal dump` and `wal verify` read a log directory with no node around it.
                "ErdtreeWAL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .testTarget(
            name: "ErdtreeRPCTests",
            dependencies: [
                "ErdtreeSync",
                "ErdtreeRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .testTarget(
            name: "ErdtreeProtobufTests",
            dependencies: [
                "ErdtreeProtobuf",
                "ErdtreeRPC",
                "ErdtreeProto",
                "CProtobufC",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .testTarget(
            name: "ErdtreeSyncTests",
            dependencies: ["ErdtreeSync"],
            swiftSettings: sanitizeSwift,
            linkerSettings: sanitizeLink
        ),
        .testTarget(
            name: "ErdtreeWALTests",
            dependencies: ["ErdtreeWAL", "ErdtreeSync"],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .testTarget(
            name: "ErdtreeStorageTests",
            dependencies: ["ErdtreeStorage"],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
        .testTarget(
            name: "ErdtreeNodeTests",
            dependencies: [
                "ErdtreeSync",
                "ErdtreeNode",
                "ErdtreeRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings,
            linkerSettings: sanitizeLink
        ),
    ] + fuzzTargets,
    swiftLanguageModes: [.v6]
)
