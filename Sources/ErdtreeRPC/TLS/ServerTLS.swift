import ErdtreeSync
import NIOSSL

/// The files of a TLS server (`server.tls`): its certificate chain and key, and, for mutual
/// TLS, the CA whose certificates clients must present.
public struct ServerTLS: Sendable, Equatable {
    public var certFile: String
    public var keyFile: String
    /// When set, a client without a certificate signed by this CA fails the handshake.
    public var clientCAFile: String?

    public init(certFile: String, keyFile: String, clientCAFile: String? = nil) {
        self.certFile = certFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
    }

    /// ALPN offers h2 first: gRPC clients take it; curl and browsers that want HTTP/1.1 for
    /// Connect or `/healthz` pick the second.
    func makeContext() throws(TLSError) -> NIOSSLContext {
        let chain = try TLSFiles.certificates(certFile)
        let key = try TLSFiles.privateKey(keyFile)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        if let clientCAFile {
            configuration.trustRoots = .certificates(try TLSFiles.certificates(clientCAFile))
            // Clients have no host name to check; the CA's signature is the whole test. NIOSSL
            // then also sets SSL_VERIFY_FAIL_IF_NO_PEER_CERT, so no certificate means no handshake.
            configuration.certificateVerification = .noHostnameVerification
        }
        configuration.applicationProtocols = ["h2", "http/1.1"]
        return try TLSFiles.context(configuration, certFile: certFile, keyFile: keyFile)
    }
}

/// The server's current TLS context, swapped whole on reload: a new connection takes the
/// context current when it is accepted and keeps it, so a reload never touches a handshake
/// in progress or a connection already up.
public final class ServerTLSContext: Sendable {
    public let files: ServerTLS
    private let current: Locked<NIOSSLContext>

    /// Reads every file now, so a bad one stops the node before it binds its port.
    /// - Throws: `TLSError` naming the file that is missing, unreadable or not PEM, or the
    ///   key that does not match the certificate.
    public init(_ files: ServerTLS) throws(TLSError) {
        self.files = files
        current = Locked(try files.makeContext())
    }

    /// Rereads the files (on SIGHUP). On any error the previous context stays in use.
    /// - Throws: what `init` throws.
    public func reload() throws(TLSError) {
        let fresh = try files.makeContext()
        current.withLock { $0 = fresh }
    }

    var context: NIOSSLContext { current.withLock { $0 } }
}
