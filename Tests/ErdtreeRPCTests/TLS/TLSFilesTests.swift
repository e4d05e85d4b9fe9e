import Foundation
import Testing

@testable import ErdtreeRPC

/// The errors a certificate, key or CA file gets before any handshake: each names the file.
/// (Key/certificate mismatch needs a real pair: tests/interop/test_tls.py makes them with openssl.)
@Suite struct TLSFilesTests {
    private func temporaryFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("erdtree-tls-\(UUID().uuidString).pem")
        try text.write(to: path, atomically: true, encoding: .utf8)
        return path.path
    }

    @Test func aMissingCertificateIsUnreadableAndNamed() {
        let error = #expect(throws: TLSError.self) {
            try ServerTLSContext(ServerTLS(certFile: "/nonexistent/server.pem", keyFile: "/nonexistent/server.key"))
        }
        #expect(error == .unreadableFile(path: "/nonexistent/server.pem", reason: "No such file or directory"))
        #expect(error?.description == "cannot read TLS file '/nonexistent/server.pem': No such file or directory")
    }

    @Test func aFileWithoutPEMBlocksIsNotACertificate() throws {
        let path = try temporaryFile("just text\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let error = #expect(throws: TLSError.self) { try TLSFiles.certificates(path) }
        guard case .badPEM(let named, let what, _) = error else {
            Issue.record("want badPEM, got \(String(describing: error))")
            return
        }
        #expect(named == path && what == "certificate")
    }

    @Test func aFileWithoutPEMBlocksIsNotAKey() throws {
        let path = try temporaryFile("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let error = #expect(throws: TLSError.self) { try TLSFiles.privateKey(path) }
        guard case .badPEM(let named, let what, _) = error else {
            Issue.record("want badPEM, got \(String(describing: error))")
            return
        }
        #expect(named == path && what == "private key")
    }

    @Test func aClientCAThatCannotBeReadIsNamedToo() {
        let error = #expect(throws: TLSError.self) {
            try ClientTLS(caFile: "/nonexistent/ca.pem").validate()
        }
        #expect(error == .unreadableFile(path: "/nonexistent/ca.pem", reason: "No such file or directory"))
    }

    @Test func theNameCheckedIsTheServerNameElseAHostNameElseTheAddressDialled() {
        #expect(ClientTLS(serverName: "master.internal").expectedName(host: "10.0.0.1") == "master.internal")
        #expect(ClientTLS().expectedName(host: "master.internal") == "master.internal")
        #expect(ClientTLS().expectedName(host: "127.0.0.1") == nil)
        #expect(ClientTLS().expectedName(host: "::1") == nil)
    }
}
