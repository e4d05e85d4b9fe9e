/// Why a certificate, key or CA file could not be used; every case names the file, so a
/// startup error or a failed SIGHUP reload says which one to fix.
public enum TLSError: Error, Equatable, CustomStringConvertible {
    /// The file could not be read (missing, a directory, no permission).
    case unreadableFile(path: String, reason: String)
    /// The file was read but holds no usable PEM `what` ("certificate", "private key").
    case badPEM(path: String, what: String, reason: String)
    /// The private key is not the one the certificate was issued for.
    case keyDoesNotMatchCertificate(certFile: String, keyFile: String)
    /// BoringSSL refused the assembled configuration for a reason none of the above covers.
    case contextRefused(reason: String)

    public var description: String {
        switch self {
        case .unreadableFile(let path, let reason):
            "cannot read TLS file '\(path)': \(reason)"
        case .badPEM(let path, let what, let reason):
            "TLS file '\(path)' holds no PEM \(what): \(reason)"
        case .keyDoesNotMatchCertificate(let certFile, let keyFile):
            "TLS key '\(keyFile)' does not match the certificate in '\(certFile)'"
        case .contextRefused(let reason):
            "cannot build the TLS context: \(reason)"
        }
    }
}
