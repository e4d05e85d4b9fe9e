import ArgumentParser

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a node whose role etcd decides: the master, or a slave of the master etcd names.",
        discussion: """
            The config's ha section says where etcd is and what this node is called (docs/configuration.md).
            With no config file: 127.0.0.1:8080, data under ./data/node, etcd at 127.0.0.1:2379.
            The master renews a lease of ha.lease_ttl and stops taking writes before it can run out; when it
            goes, the member with the newest data takes over. SIGTERM or SIGINT stops the node gracefully.
            SIGHUP rereads the auth token files and the server.tls files.
            """
    )

    @OptionGroup var options: NodeOptions

    func run() async throws {
        try await options.run(role: .node)
    }
}
