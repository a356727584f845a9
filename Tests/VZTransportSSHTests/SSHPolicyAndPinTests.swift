import VZCore
@testable import VZTransportSSH
import XCTest

final class HostKeyPinTests: XCTestCase {
    func testFingerprintIsUnpaddedBase64LikeSshKeygen() {
        XCTAssertEqual(HostKeyPin.fingerprint(sha256: [UInt8](repeating: 0, count: 32)), "SHA256:" + String(repeating: "A", count: 43))
        XCTAssertEqual(HostKeyPin.fingerprint(sha256: [UInt8](repeating: 0xFF, count: 32)), "SHA256:" + String(repeating: "/", count: 42) + "8")
    }

    func testNormalizeAcceptsTheUsualSpellings() {
        let body = "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
        for s in ["SHA256:" + body, body, body + "=", " SHA256:\(body)= "] {
            XCTAssertEqual(HostKeyPin.normalize(s), "SHA256:" + body, s)
        }
        for s in ["", "SHA256:", "MD5:aa:bb", "SHA256:" + body.dropLast(), "SHA256:" + body + "AA", "SHA256:" + body.dropLast() + "!"] {
            XCTAssertNil(HostKeyPin.normalize(String(s)), s)
        }
    }

    func testNoPinAtAllIsHostKeyUnknownAndABadPinIsBadArgument() {
        XCTAssertThrowsError(try HostKeyPin(fingerprint: nil, knownHostsFile: nil)) {
            XCTAssertEqual(($0 as? VZError)?.kind, .hostKeyUnknown)
            XCTAssertTrue(($0 as? VZError)?.message.contains("never trusts a host on first use") == true)
        }
        XCTAssertThrowsError(try HostKeyPin(fingerprint: "SHA256:short", knownHostsFile: nil)) {
            XCTAssertEqual(($0 as? VZError)?.kind, .badArgument)
            XCTAssertTrue(($0 as? VZError)?.message.contains("SHA256:short") == true)
        }
    }
}

final class SSHAlgorithmPolicyTests: XCTestCase {
    func server(ciphers: [String], macs: [String] = ["hmac-sha2-256"], kex: [String] = ["curve25519-sha256"],
                hostKey: [String] = ["ssh-ed25519"]) -> KexInit {
        KexInit(serverBanner: "SSH-2.0-Test", kex: kex, hostKey: hostKey, ciphersClientToServer: ciphers,
                ciphersServerToClient: ciphers, macsClientToServer: macs, macsServerToClient: macs,
                compressionClientToServer: ["none"], compressionServerToClient: ["none"])
    }

    /// What Debian 12's libssh2 1.10 offers in these categories (checked against the real
    /// library by the sshd tests, which negotiate through it).
    let libssh2_110: [SSHAlgorithmPolicy.Category: [String]] = [
        .kex: ["curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256", "diffie-hellman-group14-sha1"],
        .hostKey: ["ssh-ed25519", "rsa-sha2-256", "ssh-rsa"],
        .cipher: ["aes128-ctr", "aes256-ctr", "aes256-cbc", "3des-cbc"],
        .mac: ["hmac-sha2-256", "hmac-sha2-512", "hmac-sha1"],
        .compression: ["none", "zlib"]]

    func testRestrictedDropsWhatTheLibraryLacks() throws {
        let p = try SSHAlgorithmPolicy.standard.restricted { self.libssh2_110[$0] ?? [] }
        XCTAssertEqual(p.ciphers, ["aes256-ctr"])
        XCTAssertEqual(p.macs, ["hmac-sha2-256", "hmac-sha2-512"])
        XCTAssertEqual(p.kex.first, "curve25519-sha256")
        XCTAssertEqual(p.hostKey.first, "ssh-ed25519")
        XCTAssertEqual(p.compression, ["none"])
    }

    func testALibraryWithoutAES256IsRefusedUpFront() {
        XCTAssertThrowsError(try SSHAlgorithmPolicy.standard.restricted { $0 == .cipher ? ["aes128-ctr"] : (self.libssh2_110[$0] ?? []) }) {
            XCTAssertEqual(($0 as? VZError)?.kind, .noAcceptableCipher)
            XCTAssertTrue(($0 as? VZError)?.message.contains("aes128-ctr") == true)
        }
    }

    func testMismatchNamesTheServersCiphers() throws {
        let p = try SSHAlgorithmPolicy.standard.restricted { self.libssh2_110[$0] ?? [] }
        XCTAssertNil(p.mismatch(with: server(ciphers: ["aes256-gcm@openssh.com", "aes256-ctr"]), peer: "t:22"))
        let e = try XCTUnwrap(p.mismatch(with: server(ciphers: ["aes128-ctr", "chacha20-poly1305@openssh.com"]), peer: "t:22"))
        XCTAssertEqual(e.kind, .noAcceptableCipher)
        XCTAssertTrue(e.message.contains("aes128-ctr,chacha20-poly1305@openssh.com"), e.message)
        XCTAssertTrue(e.message.contains("t:22"))
        XCTAssertTrue(e.message.contains("vzrepl offers aes256-ctr"), e.message)
    }

    func testMacKexAndHostKeyMismatchesAreNamedToo() throws {
        let p = try SSHAlgorithmPolicy.standard.restricted { self.libssh2_110[$0] ?? [] }
        let mac = try XCTUnwrap(p.mismatch(with: server(ciphers: ["aes256-ctr"], macs: ["hmac-sha1"]), peer: "t:22"))
        XCTAssertTrue(mac.message.contains("MAC") && mac.message.contains("hmac-sha1"), mac.message)
        let kex = try XCTUnwrap(p.mismatch(with: server(ciphers: ["aes256-ctr"], kex: ["diffie-hellman-group1-sha1"]), peer: "t:22"))
        XCTAssertTrue(kex.message.contains("key exchange") && kex.message.contains("group1"), kex.message)
        let hk = try XCTUnwrap(p.mismatch(with: server(ciphers: ["aes256-ctr"], hostKey: ["ssh-dss"]), peer: "t:22"))
        XCTAssertTrue(hk.message.contains("host key") && hk.message.contains("ssh-dss"), hk.message)
    }

    func testAnAEADCipherNeedsNoCommonMAC() {
        // A libssh2 with GCM would pick it, and then the MAC list does not matter.
        XCTAssertNil(SSHAlgorithmPolicy.standard.mismatch(with: server(ciphers: ["aes256-gcm@openssh.com"], macs: ["umac-128@openssh.com"]), peer: "t:22"))
    }
}
