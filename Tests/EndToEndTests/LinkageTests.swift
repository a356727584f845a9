import Foundation
import XCTest

/// The target agent only ever speaks stdio under sshd: it must not link an SSH client library.
final class LinkageTests: XCTestCase {
    func testTargetAgentLinksNoLibssh2() throws {
        let target = try AgentHarness.run(["/usr/bin/ldd", AgentHarness.target])
        XCTAssertEqual(target.status, 0, target.stderr)
        XCTAssertTrue(target.stdout.contains("libcrypto"), "ldd output looks wrong: \(target.stdout)")
        XCTAssertFalse(target.stdout.contains("libssh2"), target.stdout)
        // Nor statically: `make` links the vendored libssh2 into the source as an archive, which
        // ldd does not show, so the symbol tables tell. The check can fail: the source has them.
        func libssh2Symbols(_ binary: String) throws -> [Substring] {
            let nm = try AgentHarness.run(["/usr/bin/nm", binary])
            XCTAssertEqual(nm.status, 0, nm.stderr)
            return nm.stdout.split(separator: "\n").filter { $0.hasSuffix(" libssh2_session_init_ex") }
        }
        XCTAssertEqual(try libssh2Symbols(AgentHarness.target), [])
        let source = try AgentHarness.run(["/usr/bin/ldd", AgentHarness.source])
        XCTAssertTrue(try source.stdout.contains("libssh2") || !libssh2Symbols(AgentHarness.source).isEmpty,
                      "the source agent has no libssh2, statically or dynamically: \(source.stdout)")
    }
}
