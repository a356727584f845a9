import Foundation
import XCTest

/// The exec transport's side of a target agent's life: one that cannot start, one that says
/// something that is not a banner, one that stops reading, one that does not exit after `bye`.
/// Each must end the pass with an `error` event (when it failed), `pass-finished` and an exit
/// code within a bound the documentation states (Docs/operations.md, "Timeouts").
final class TargetAgentLifecycleTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func disk(_ bytes: Int = 1 << 20, seed: UInt64 = 1) throws -> String {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: UInt64(bytes))
        try AgentHarness.write(AgentHarness.randomBytes(bytes, seed: seed), to: src, at: 0)
        return src
    }

    /// A job whose target command is `command`, with the given idle timeout.
    func job(_ command: [String], idle: Double = 2, disk: String) throws -> String {
        let obj: [String: Any] = ["job": "vm1", "blockSize": 65536,
                                  "target": ["transport": "exec", "command": command, "idleTimeoutSeconds": idle],
                                  "disks": [["name": "disk0", "source": disk]]]
        let path = h.dir + "/job-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    func script(_ name: String, _ body: String) throws -> String {
        let path = h.dir + "/" + name
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    /// The real agent's command line, after `$0` in a `sh -c` wrapper.
    var agent: [String] { [AgentHarness.target, "serve", "--stdio", "--root", h.root, "--log-file", h.dir + "/target.log"] }

    var sourceLog: String { (try? String(contentsOfFile: h.dir + "/source.log", encoding: .utf8)) ?? "" }

    func timed(_ body: () throws -> AgentHarness.Result) rethrows -> (AgentHarness.Result, Double) {
        let start = Date()
        let r = try body()
        return (r, Date().timeIntervalSince(start))
    }

    func assertUnavailable(_ r: AgentHarness.Result, mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(r.status, 4, r.stdout, file: file, line: line)
        let e = try XCTUnwrap(r.events("error").first, r.stdout, file: file, line: line)
        XCTAssertEqual(e["kind"] as? String, "targetUnavailable", r.stdout, file: file, line: line)
        XCTAssertEqual(e["transient"] as? Bool, false, "a retry cannot fix it", file: file, line: line)
        XCTAssertEqual(e["exitCode"] as? Int, 4, file: file, line: line)
        for m in mentions {
            XCTAssertTrue((e["message"] as? String ?? "").contains(m), "'\(e["message"] ?? "")' does not mention '\(m)'", file: file, line: line)
        }
        XCTAssertEqual(r.events("pass-finished").first?["ok"] as? Bool, false, file: file, line: line)
    }

    func testATargetCommandThatDoesNotExistIsTargetUnavailable() throws {
        let r = try h.replicate(try job(["/nonexistent/vzrepl-target", "serve", "--stdio"], disk: try disk()))
        try assertUnavailable(r, mentions: ["/nonexistent/vzrepl-target", "No such file"])
    }

    /// What the dynamic loader prints when a runtime library is missing, and its status 127.
    func testATargetThatCannotLoadItsLibrariesIsTargetUnavailableWithItsStderr() throws {
        let fake = try script("no-libs", """
        echo "vzrepl-target: error while loading shared libraries: libfoo.so: cannot open shared object file: No such file or directory" >&2
        exit 127
        """)
        let r = try h.replicate(try job([fake, "serve", "--stdio"], disk: try disk()))
        try assertUnavailable(r, mentions: ["status 127", "error while loading shared libraries: libfoo.so"])
        XCTAssertTrue(r.stderr.contains("libfoo.so"), "the agent's stderr is still passed through")
    }

    /// Not a banner, and a process that then waits for nothing: the source reports the bad
    /// banner as an `error` event (it used to hang in close before emitting it), then stops the
    /// child after the idle timeout (2 s) plus SIGTERM.
    func testABadBannerIsAnErrorEventAndThePassEnds() throws {
        let fake = try script("http", "echo 'HTTP/1.1 400 Bad Request'\nexec sleep 1000")
        let (r, seconds) = try timed { try h.replicate(try job([fake], disk: try disk())) }
        XCTAssertEqual(r.status, 4, r.stdout)
        let e = try XCTUnwrap(r.events("error").first, r.stdout)
        XCTAssertEqual(e["kind"] as? String, "protocolViolation")
        XCTAssertTrue((e["message"] as? String ?? "").contains("HTTP/1.1 400"), "\(e)")
        XCTAssertEqual(r.events("pass-finished").count, 1)
        XCTAssertLessThan(seconds, 2 + 5 + 5)
        XCTAssertTrue(sourceLog.contains("SIGTERM"), sourceLog)
    }

    /// A target that stops reading (its stdin stays open, nobody reads it) while the source sends
    /// blocks: the source's write has a deadline, the idle timeout (2 s), like its reads.
    func testASourceWritingToATargetThatStopsReadingGivesUp() throws {
        // `dd` passes the first 300 kB on to the real agent as they come (head would buffer
        // them), then `sleep` holds the pipe open and reads nothing.
        let command = ["/bin/sh", "-c", "{ dd bs=65536 iflag=count_bytes count=300000 2>/dev/null; exec sleep 1000; } | exec \"$0\" \"$@\""] + agent
        let (r, seconds) = try timed { try h.replicate(try job(command, disk: try disk(16 << 20))) }
        XCTAssertEqual(r.status, 4, r.stdout)
        let e = try XCTUnwrap(r.events("error").first, r.stdout)
        XCTAssertEqual(e["kind"] as? String, "timeout", r.stdout)
        XCTAssertTrue((e["message"] as? String ?? "").contains("could be written"), "\(e)")
        XCTAssertLessThan(seconds, 15)
    }

    /// After `bye` the agent's wrapper neither exits nor minds SIGTERM: the source waits the idle
    /// timeout (2 s), sends SIGTERM, waits 5 s, sends SIGKILL, says so in its log, and the pass
    /// (which committed) still ends with exit code 0.
    func testATargetThatIgnoresEndOfInputAfterByeIsKilledWithinTheBound() throws {
        let command = ["/bin/sh", "-c", "trap '' TERM; \"$0\" \"$@\"; exec sleep 1000"] + agent
        let src = try disk()
        let (r, seconds) = try timed { try h.replicate(try job(command, disk: src)) }
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.events("pass-finished").first?["ok"] as? Bool, true)
        XCTAssertGreaterThan(seconds, 2 + 5 - 0.5, "SIGTERM was not ignored: the test proves nothing")
        XCTAssertLessThan(seconds, 2 + 5 + 6)
        XCTAssertTrue(sourceLog.contains("sent SIGTERM, then SIGKILL"), sourceLog)
        XCTAssertTrue(try AgentHarness.filesEqual(src, "\(h.root)/vm1/disk0-flat.vmdk"))
    }

    /// The same with a wrapper that does stop on SIGTERM: done right after the idle timeout.
    func testATargetThatIgnoresEndOfInputAfterByeIsStoppedWithSIGTERM() throws {
        let command = ["/bin/sh", "-c", "\"$0\" \"$@\"; exec sleep 1000"] + agent
        let (r, seconds) = try timed { try h.replicate(try job(command, disk: try disk())) }
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertLessThan(seconds, 2 + 5)
        XCTAssertTrue(sourceLog.contains("stopped with SIGTERM"), sourceLog)
    }
}
