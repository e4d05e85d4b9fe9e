import Foundation
import NIOCore
import NIOPosix

@testable import ErdtreeNode

/// A one-member etcd (Debian's etcd-server, /usr/bin/etcd) on free loopback ports with its data
/// in a fresh temporary directory, started with the command line the benchmark's anchor uses
/// (bench/servers.py) and waited for until it answers. The one place tests start etcd.
///
/// Tests that need etcd fail, saying to run `scripts/install-deps.sh test`, when it is not
/// installed: they are never skipped.
final class TestEtcd {
    private(set) var process: Process
    let clientPort: Int
    let peerPort: Int
    let directory: URL

    /// Where clients reach it, `host:port`.
    var endpoint: String { "127.0.0.1:\(clientPort)" }

    static var group: any EventLoopGroup { MultiThreadedEventLoopGroup.singleton }
    /// How long `start` waits for etcd to answer.
    static let startupPatience = Duration.seconds(20)
    /// Fresh ports are ones the OS just handed out and took back, which another test (or an
    /// outgoing connection) may take before etcd binds them: an etcd that exits saying so is
    /// started again on others, up to this many times in all.
    static let portAttempts = 3

    private init(process: Process, clientPort: Int, peerPort: Int, directory: URL) {
        self.process = process
        self.clientPort = clientPort
        self.peerPort = peerPort
        self.directory = directory
    }

    /// Starts etcd and waits until it answers.
    static func start() async throws -> TestEtcd {
        let binary = try executable()
        var attempt = 1
        while true {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "erdtree-etcd-\(UUID().uuidString)", isDirectory: true)
            let (clientPort, peerPort) = (try await freePort(), try await freePort())
            let process = try launch(binary, clientPort: clientPort, peerPort: peerPort, directory: directory)
            let etcd = TestEtcd(process: process, clientPort: clientPort, peerPort: peerPort, directory: directory)
            do {
                try await etcd.waitUntilAnswering()
                return etcd
            } catch let error as TestEtcdError where error.portTaken && attempt < portAttempts {
                await etcd.stop()
                attempt += 1
            } catch {
                await etcd.stop()
                throw error
            }
        }
    }

    /// Starts a stopped etcd again, on its ports and data, and waits until it answers.
    func restart() async throws {
        process = try Self.launch(
            try Self.executable(), clientPort: clientPort, peerPort: peerPort, directory: directory)
        do {
            try await waitUntilAnswering()
        } catch {
            await stop(keepingData: true)
            throw error
        }
    }

    /// Stops etcd and, unless `keepingData`, removes its directory.
    func stop(keepingData: Bool = false) async {
        if process.isRunning { process.terminate() }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        // Returns at once now. Foundation's Process keeps itself alive through its run-loop
        // source until `waitUntilExit` drops it (swift-corelibs-foundation, Process.swift):
        // without this each etcd leaked its Process (LeakSanitizer).
        process.waitUntilExit()
        if !keepingData { try? FileManager.default.removeItem(at: directory) }
    }

    /// A client of this etcd.
    func connect(timeout: Duration = .seconds(5)) async throws -> EtcdClient {
        try await EtcdClient.connect(endpoints: [endpoint], group: Self.group, timeout: patience(timeout))
    }

    private static func launch(_ binary: URL, clientPort: Int, peerPort: Int, directory: URL) throws -> Process {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let client = "http://127.0.0.1:\(clientPort)"
        let peer = "http://127.0.0.1:\(peerPort)"
        let process = Process()
        process.executableURL = binary
        process.arguments = [
            "--data-dir", directory.appendingPathComponent("data").path,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "test=\(peer)", "--name", "test",
        ]
        let log = directory.appendingPathComponent("etcd.log")
        if !FileManager.default.fileExists(atPath: log.path) {
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        }
        let output = try FileHandle(forWritingTo: log)
        defer { try? output.close() }
        try output.seekToEnd()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        return process
    }

    private func waitUntilAnswering() async throws {
        let deadline = ContinuousClock.now + Self.startupPatience
        var lastError: any Error = TestEtcdError("never tried")
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                let log = logTail()
                throw TestEtcdError(
                    "etcd exited with status \(process.terminationStatus); its log:\n\(log)",
                    portTaken: log.contains("address already in use"))
            }
            do {
                let client = try await connect(timeout: .seconds(1))
                await client.close()
                return
            } catch {
                lastError = error
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestEtcdError(
            "etcd did not answer on \(endpoint) within \(Self.startupPatience) (\(lastError)); its log:\n\(logTail())")
    }

    func logTail(lines: Int = 20) -> String {
        let text = (try? String(contentsOf: directory.appendingPathComponent("etcd.log"), encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// The etcd binary: Debian's etcd-server installs /usr/bin/etcd.
    static func executable() throws -> URL {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in ["/usr/bin"] + path.split(separator: ":").map(String.init) {
            let candidate = URL(fileURLWithPath: directory).appendingPathComponent("etcd")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        throw TestEtcdError(
            "etcd not found in /usr/bin or on PATH: run scripts/install-deps.sh test (it installs Debian's etcd-server)"
        )
    }

    /// A loopback port nothing listens on now (the OS picked it for a socket just closed).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port
        try await channel.close()
        guard let port else { throw TestEtcdError("a bound socket has no port") }
        return port
    }
}

struct TestEtcdError: Error, CustomStringConvertible {
    let description: String
    /// etcd could not bind a port it was given.
    var portTaken = false

    init(_ description: String, portTaken: Bool = false) {
        self.description = description
        self.portTaken = portTaken
    }
}

/// Starts etcd and connects a client, runs `body`, then closes both (and stops etcd as `body`
/// left it, restarted or not), also when `body` throws.
func withTestEtcd(
    clientTimeout: Duration = .seconds(5), _ body: (TestEtcd, EtcdClient) async throws -> Void
) async throws {
    let etcd = try await TestEtcd.start()
    let client: EtcdClient
    do {
        client = try await etcd.connect(timeout: clientTimeout)
    } catch {
        await etcd.stop()
        throw error
    }
    do {
        try await body(etcd, client)
    } catch {
        await client.close()
        await etcd.stop()
        throw error
    }
    await client.close()
    await etcd.stop()
}
