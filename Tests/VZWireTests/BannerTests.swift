import VZCore
import XCTest
@testable import VZWire

/// The banner parser fed bytes, split at every offset, against lines written by hand from
/// Docs/protocol.md §1.
final class BannerTests: XCTestCase {
    func parse(_ text: String) throws -> Banner? {
        var p = BannerParser(peerName: "peer")
        for b in Array(text.utf8) { if let banner = try p.feed(b) { return banner } }
        return nil
    }

    func testOwnBannerIsTheDocumentedLine() {
        XCTAssertEqual(Banner.encode(agent: "vzrepl-target", version: "1.2.3"), Array("VZREPL/3 vzrepl-target 1.2.3\n".utf8))
    }

    func testGoodBannerIsRecognisedOnlyAtItsNewline() throws {
        let line = "VZREPL/1 vzrepl-source 0.9\n"
        var p = BannerParser(peerName: "peer")
        let bytes = Array(line.utf8)
        for (i, b) in bytes.enumerated() {
            let r = try p.feed(b)
            if i < bytes.count - 1 { XCTAssertNil(r, "complete after \(i + 1) bytes") } else {
                XCTAssertEqual(r, Banner(protocolVersion: 1, line: "VZREPL/1 vzrepl-source 0.9"))
            }
        }
    }

    func testOtherVersionIsAVersionMismatchNamingIt() {
        XCTAssertThrowsError(try parse("VZREPL/4 future 9\n")) { e in
            XCTAssertEqual((e as? VZError)?.kind, .versionMismatch)
            XCTAssertTrue("\(e)".contains("protocol version 4"), "\(e)")
        }
        XCTAssertThrowsError(try parse("VZREPL/0 past 0\n")) { XCTAssertEqual(($0 as? VZError)?.kind, .versionMismatch) }
        XCTAssertThrowsError(try parse("VZREPL/x y\n")) { XCTAssertEqual(($0 as? VZError)?.kind, .versionMismatch) }
    }

    /// Version 2 added the progress message; a version-1 peer is still spoken to (without it).
    func testVersionsOneAndTwoAreAccepted() throws {
        XCTAssertEqual(try parse("VZREPL/1 vzrepl-source 0.1.0\n")?.protocolVersion, 1)
        XCTAssertEqual(try parse("VZREPL/2 vzrepl-source 0.2.0\n")?.protocolVersion, 2)
    }

    func testNotAVzreplAgent() {
        XCTAssertThrowsError(try parse("SSH-2.0-OpenSSH_9.2\n")) { e in
            XCTAssertEqual((e as? VZError)?.kind, .protocolViolation)
            XCTAssertTrue("\(e)".contains("not a vzrepl agent"))
        }
    }

    func testOverlongLineIsRefusedWithoutWaitingForANewline() {
        var p = BannerParser(peerName: "peer")
        var thrown: VZError?
        for _ in 0..<1000 {
            do { _ = try p.feed(0x41) } catch { thrown = error as? VZError; break }
        }
        XCTAssertEqual(thrown?.kind, .protocolViolation)
        XCTAssertTrue(thrown?.message.contains("longer than 128") ?? false)
    }

    func testEndOfStreamNamesWhatArrived() throws {
        var p = BannerParser(peerName: "target")
        for b in Array("bash: vzrepl".utf8) { _ = try p.feed(b) }
        let e = p.endOfStream()
        XCTAssertEqual(e.kind, .connectionLost)
        XCTAssertTrue(e.message.contains("bash: vzrepl"), e.message)
    }
}
