import VZCore
@testable import VZTransportSSH
import XCTest

/// The KEXINIT parser is fed bytes, never a socket: whole, split at every offset, byte by byte,
/// truncated, and with lengths that lie.
final class KexInitParserTests: XCTestCase {
    static let lists = [
        "curve25519-sha256,curve25519-sha256@libssh.org", "ssh-ed25519",
        "aes256-gcm@openssh.com,aes256-ctr", "aes256-gcm@openssh.com,aes256-ctr",
        "hmac-sha2-512,hmac-sha2-256", "hmac-sha2-512,hmac-sha2-256",
        "none,zlib@openssh.com", "none", "", ""]

    /// A server greeting: optional pre-banner lines, the identification line, one KEXINIT packet.
    static func greeting(lists: [String] = lists, preLines: [String] = [], banner: String = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3",
                         paddingLength: Int = 8, lengthOverride: (field: Int, value: UInt32)? = nil) -> [UInt8] {
        var payload: [UInt8] = [20] + [UInt8](repeating: 0xAB, count: 16)
        for (i, list) in lists.enumerated() {
            let bytes = Array(list.utf8)
            payload += be32(lengthOverride?.field == i ? lengthOverride!.value : UInt32(bytes.count)) + bytes
        }
        payload += [0] + be32(0)
        var out: [UInt8] = []
        for l in preLines { out += Array((l + "\r\n").utf8) }
        out += Array((banner + "\r\n").utf8)
        out += be32(UInt32(1 + payload.count + paddingLength)) + [UInt8(paddingLength)] + payload
            + [UInt8](repeating: 0, count: paddingLength)
        return out
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    func testParsesAWholeGreeting() throws {
        var p = KexInitParser(peer: "h:22")
        p.append(Self.greeting(preLines: ["Welcome", "to the target"]))
        let k = try XCTUnwrap(p.next())
        XCTAssertEqual(k.serverBanner, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3")
        XCTAssertEqual(k.kex, ["curve25519-sha256", "curve25519-sha256@libssh.org"])
        XCTAssertEqual(k.hostKey, ["ssh-ed25519"])
        XCTAssertEqual(k.ciphersClientToServer, ["aes256-gcm@openssh.com", "aes256-ctr"])
        XCTAssertEqual(k.macsServerToClient, ["hmac-sha2-512", "hmac-sha2-256"])
        XCTAssertEqual(k.compressionClientToServer, ["none", "zlib@openssh.com"])
        XCTAssertTrue(p.isDone)
        XCTAssertNil(try p.next(), "a parser that is done returns nothing more")
    }

    func testSplitAtEveryOffsetGivesTheSameResult() throws {
        let bytes = Self.greeting(preLines: ["hello"])
        var whole = KexInitParser(peer: "h:22")
        whole.append(bytes)
        let expected = try XCTUnwrap(whole.next())
        for cut in 0...bytes.count {
            var p = KexInitParser(peer: "h:22")
            p.append(Array(bytes[..<cut]))
            let early = try p.next()
            if cut < bytes.count { XCTAssertNil(early, "complete after only \(cut) of \(bytes.count) bytes") }
            p.append(Array(bytes[cut...]))
            let result = try early ?? p.next()
            XCTAssertEqual(result, expected, "split at \(cut)")
        }
    }

    func testByteByByte() throws {
        let bytes = Self.greeting()
        var p = KexInitParser(peer: "h:22")
        var result: KexInit?
        for (i, b) in bytes.enumerated() {
            p.append([b])
            if let k = try p.next() {
                XCTAssertEqual(i, bytes.count - 1, "returned before the last byte")
                result = k
            }
        }
        XCTAssertEqual(result?.ciphersServerToClient, ["aes256-gcm@openssh.com", "aes256-ctr"])
    }

    func testEveryTruncationWaitsForMoreAndNeverThrows() throws {
        let bytes = Self.greeting()
        for n in 0..<bytes.count {
            var p = KexInitParser(peer: "h:22")
            p.append(Array(bytes[..<n]))
            XCTAssertNil(try p.next(), "truncated to \(n) bytes")
        }
    }

    func testNameListLengthBeyondThePacketIsAnError() {
        for field in 0..<10 {
            var p = KexInitParser(peer: "target:2222")
            p.append(Self.greeting(lengthOverride: (field, 0xFFFF_FFF0)))
            XCTAssertThrowsError(try p.next(), "field \(field)") { e in
                let err = e as? VZError
                XCTAssertEqual(err?.kind, .protocolViolation)
                XCTAssertTrue(err?.message.contains("target:2222") == true)
                XCTAssertTrue(err?.message.contains("exceeds") == true, err?.message ?? "")
            }
        }
    }

    func testHugePacketLengthIsRejectedBeforeBuffering() {
        var bytes = Array("SSH-2.0-x\r\n".utf8)
        bytes += Self.be32(0x7FFF_FFFF) + [8]
        var p = KexInitParser(peer: "h:22")
        p.append(bytes)
        XCTAssertThrowsError(try p.next()) { XCTAssertTrue(($0 as? VZError)?.message.contains("packet_length") == true) }
    }

    func testBadPaddingWrongMessageAndBadNamesAreErrors() {
        var bad = Self.greeting(lists: [String](repeating: "", count: 10), paddingLength: 4)
        bad[bad.firstIndex(of: 0x0A)! + 5] = 250 // padding_length larger than the packet
        var cases: [(String, [UInt8])] = [("padding_length", bad)]
        var notKex = Self.greeting()
        notKex[notKex.firstIndex(of: 0x0A)! + 6] = 21
        cases.append(("SSH_MSG_KEXINIT", notKex))
        cases.append(("printable", Self.greeting(lists: ["curve25519\u{1}", "", "", "", "", "", "", "", "", ""])))
        cases.append(("protocol 2.0", Array("SSH-1.5-ancient\r\n".utf8)))
        cases.append(("longer than", [UInt8](repeating: 0x41, count: 300)))
        cases.append(("without an SSH identification", Array(String(repeating: "noise\r\n", count: 40).utf8)))
        for (expect, bytes) in cases {
            var p = KexInitParser(peer: "h:22")
            p.append(bytes)
            XCTAssertThrowsError(try p.next(), expect) { e in
                XCTAssertEqual((e as? VZError)?.kind, .protocolViolation)
                XCTAssertTrue((e as? VZError)?.message.contains(expect) == true, "\(expect): \(e)")
            }
        }
    }

    func testFirstWordsNameWhatANonSSHServerSent() throws {
        var p = KexInitParser(peer: "h:22")
        XCTAssertNil(p.firstWords)
        p.append(Array("HTTP/1.1 400".utf8))
        XCTAssertNil(try p.next())
        XCTAssertEqual(p.firstWords, "HTTP/1.1 400")
        p.append(Array(" Bad Request\r\n\r\n".utf8))
        XCTAssertNil(try p.next())
        XCTAssertEqual(p.firstWords, "HTTP/1.1 400 Bad Request")
        XCTAssertFalse(p.sawIdentification)
    }

    func testEmptyNameListsAreEmptyArrays() throws {
        var p = KexInitParser(peer: "h:22")
        p.append(Self.greeting(lists: ["a", "b", "", "", "", "", "", "", "", ""]))
        let k = try XCTUnwrap(p.next())
        XCTAssertEqual(k.ciphersClientToServer, [])
    }
}
