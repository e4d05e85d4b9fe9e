internal import Foundation
import NIOSSL

/// Reads PEM files into NIOSSL's types, turning its errors (which name no file) into
/// `TLSError`s that do. Paths are read at every call: a reload or a redial sees a replaced file.
enum TLSFiles {
    static func certificates(_ path: String) throws(TLSError) -> [NIOSSLCertificate] {
        let bytes = try read(path)
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw .badPEM(path: path, what: "certificate", reason: "\(error)")
        }
        guard !chain.isEmpty else {
            throw .badPEM(path: path, what: "certificate", reason: "no 'BEGIN CERTIFICATE' block")
        }
        return chain
    }

    static func privateKey(_ path: String) throws(TLSError) -> NIOSSLPrivateKey {
        let bytes = try read(path)
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw .badPEM(path: path, what: "private key", reason: "\(error)")
        }
    }

    /// Builds the context; a key that parsed but that BoringSSL will not pair with the
    /// certificate (`SSL_CTX_use_PrivateKey` checks they match) is reported as a mismatch.
    static func context(_ configuration: TLSConfiguration, certFile: String?, keyFile: String?)
        throws(TLSError) -> NIOSSLContext
    {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            throw .keyDoesNotMatchCertificate(certFile: certFile ?? "", keyFile: keyFile ?? "")
        } catch {
            throw .contextRefused(reason: "\(error)")
        }
    }

    private static func read(_ path: String) throws(TLSError) -> [UInt8] {
        do {
            return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            // Foundation's own text hides errno; the POSIX error under it says it plainly.
            let nsError = error as NSError
            if let posix = nsError.userInfo[NSUnderlyingErrorKey] as? POSIXError {
                throw .unreadableFile(path: path, reason: String(cString: strerror(posix.code.rawValue)))
            }
            throw .unreadableFile(path: path, reason: nsError.localizedDescription)
        }
    }
}
