import NIOCore
import NIOSSL

/// How a client checks the server it dials, and the certificate it shows under mutual TLS
/// (`master.tls`, `ha.etcd.tls`, the CLI's `--tls-*` flags).
public struct ClientTLS: Sendable, Equatable {
    /// The CA that signed the server's certificate; nil trusts the system's roots.
    public var caFile: String?
    /// The name the server's certificate must carry (and the SNI sent); nil checks the host
    /// dialled, or its IP address when that is what was dialled.
    public var serverName: String?
    /// The client's certificate and key, both or neither.
    public var certFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, serverName: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.serverName = serverName
        self.certFile = certFile
        self.keyFile = keyFile
    }

    /// Reads every file once, so a node refuses to start with a client configuration that could
    /// never connect rather than retrying it forever.
    /// - Throws: `TLSError` naming the file.
    public func validate() throws(TLSError) {
        _ = try makeContext()
    }

    /// Built for each connection, from the files as they are then: a slave whose client
    /// certificate was replaced presents the new one on its next dial.
    func makeContext() throws(TLSError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            configuration.trustRoots = .certificates(try TLSFiles.certificates(caFile))
        }
        if let certFile, let keyFile {
            configuration.certificateChain = try TLSFiles.certificates(certFile).map { .certificate($0) }
            configuration.privateKey = .privateKey(try TLSFiles.privateKey(keyFile))
        }
        configuration.applicationProtocols = ["h2"]
        return try TLSFiles.context(configuration, certFile: certFile, keyFile: keyFile)
    }

    /// The name to check and send as SNI: NIOSSL refuses an IP address as SNI and, given
    /// none, checks the certificate's IP SANs against the address it connected to.
    func expectedName(host: String) -> String? {
        if let serverName { return serverName }
        let isIPAddress = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        return isIPAddress ? nil : host
    }
}
