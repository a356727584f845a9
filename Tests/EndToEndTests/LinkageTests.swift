import Foundation
import XCTest

/// The target agent only ever speaks stdio under sshd: it must not link an SSH client library.
final class LinkageTests: XCTestCase {
    func testTargetAgentLinksNoLibssh2() throws {
        let target = try AgentHarness.run(["/usr/bin/ldd", AgentHarness.target])
        XCTAssertEqual(target.status, 0, target.stderr)
        XCTAssertTrue(target.stdout.contains("libcrypto"), "ldd output looks wrong: \(target.stdout)")
        XCTAssertFalse(target.stdout.contains("libssh2"), target.stdout)
        // The check can fail: the source agent does link it.
        let source = try AgentHarness.run(["/usr/bin/ldd", AgentHarness.source])
        XCTAssertTrue(source.stdout.contains("libssh2"), source.stdout)
    }
}
