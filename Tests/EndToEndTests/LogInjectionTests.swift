import Foundation
import VZCore
import VZTestSupport
import XCTest

/// Text the peer controls reaches the target's log (its version string, the command it asked
/// sshd for, names the target refuses): none of it may start a log line of its own.
final class LogInjectionTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    /// Regression: a hello whose sourceVersion held "\nlevel=error forged" wrote a forged line
    /// into the target log.
    func testRegression_HostileHelloCannotForgeATargetLogLine() throws {
        let forged = "level=error forged"
        var bytes = Array("VZREPL/1 test-client 0\n".utf8)
        bytes += Message.hello(job: "vm1", sourceVersion: "evil 1\n\(forged)\r\n\u{1B}[31m\u{2028}\(forged)").encodedFrame()
        bytes += Message.hello(job: "../x", sourceVersion: "again").encodedFrame()
        let log = h.dir + "/t.log"
        let r = try AgentHarness.run([AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", log,
                                      "--idle-timeout", "10"],
                                     environment: ["SSH_ORIGINAL_COMMAND": "rsync --server\n\(forged) via the command"],
                                     stdin: Data(bytes), timeout: 30)
        XCTAssertNotEqual(r.status, 0)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertTrue(text.contains(#"peer="evil 1\n\#(forged)\r\n\x1b[31m\u2028\#(forged)""#), text)
        XCTAssertTrue(text.contains(#"rsync --server\n\#(forged) via the command"#), text)
        for line in text.split(separator: "\n") + r.stderr.split(separator: "\n") {
            XCTAssertFalse(line.hasPrefix(forged), "forged line: \(line)")
            XCTAssertTrue(line.hasPrefix("ts="), "a line that does not start with ts=: \(line)")
            // Read back by an independent logfmt parser: the peer's text is one field's value.
            let f = try LogfmtParser.fields(String(line))
            XCTAssertNotEqual(f["msg"], "forged")
        }
        let started = try text.split(separator: "\n").map { try LogfmtParser.fields(String($0)) }.first { $0["msg"] == "session started" }
        XCTAssertEqual(started?["peer"], "evil 1\n\(forged)\r\n\u{1B}[31m\u{2028}\(forged)")
    }
}
