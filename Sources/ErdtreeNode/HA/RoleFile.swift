import ErdtreeWAL

/// The role a node took at run time (Promote, Follow, Failover, stepping down), kept in
/// `<wal.directory>/role` so that a restart keeps it: a node that followed a new master must not
/// come back as a master because its config file still says so. Redis keeps `REPLICAOF` the
/// same way when it rewrites its config file.
///
/// One line: `master`, `follow HOST:PORT` or `fenced EPOCH`. Without the file a node starts in
/// its config's role; an operator deletes it to go back to that.
enum RoleFile {
    static func path(walDirectory: String) -> String { walDirectory + "/role" }

    /// The saved role, or nil when none was saved.
    /// - Throws: `Malformed` for a file that says something else (the node refuses to start
    ///   rather than guess its role), `WALError` when it cannot be read.
    static func read(walDirectory: String) throws -> RoleManager.Role? {
        let path = path(walDirectory: walDirectory)
        guard let text = try DurableFile.read(path) else { return nil }
        let words = text.split(whereSeparator: \.isWhitespace)
        switch (words.first, words.count) {
        case ("master", 1):
            return .master
        case ("follow", 2):
            let address = String(words[1])
            guard (try? SocketAddressSpec(parsing: address)) != nil else { throw Malformed(path: path, text: text) }
            return .slave(master: address)
        case ("fenced", 2):
            guard let epoch = UInt64(words[1]) else { throw Malformed(path: path, text: text) }
            return .fenced(epoch: epoch)
        default:
            throw Malformed(path: path, text: text)
        }
    }

    /// Saves `role` (a switchover in progress is saved as the master it still is).
    static func write(_ role: RoleManager.Role, walDirectory: String) throws(WALError) {
        let line: String
        switch role {
        case .master, .handingOver: line = "master"
        case .slave(let master): line = "follow \(master)"
        case .fenced(let epoch): line = "fenced \(epoch)"
        case .electing: return  // etcd decides a coordinated node's role at every start
        }
        try DurableFile.replace(path(walDirectory: walDirectory), with: line + "\n")
    }

    struct Malformed: Error, CustomStringConvertible {
        var path: String
        var text: String

        var description: String {
            "\(path) says \"\(text.split(whereSeparator: \.isWhitespace).joined(separator: " ").prefix(80))\", "
                + "not \"master\", \"follow HOST:PORT\" or \"fenced EPOCH\"; delete it to start in the config's role"
        }
    }
}
