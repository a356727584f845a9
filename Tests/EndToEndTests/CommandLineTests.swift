import Foundation
import XCTest

/// The command-line contract of both agents with the controlling server (Docs/events.md): exit
/// codes of usage errors, the events of a pass that fails before it starts, `check-job --json`,
/// `--version`, and a job file read without trusting its size or type.
final class CommandLineTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    /// pass-started first, then error, then pass-finished last with ok false and `code`.
    func assertFailedPassEvents(_ r: AgentHarness.Result, code: Int, kind: String, job: String, mentions: String,
                                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, Int32(code), r.stdout + r.stderr, file: file, line: line)
        let events = r.events
        XCTAssertEqual(events.map { $0["event"] as? String }, ["pass-started", "error", "pass-finished"], r.stdout, file: file, line: line)
        guard events.count == 3 else { return }
        for e in events { XCTAssertEqual(e["job"] as? String, job, "\(e)", file: file, line: line) }
        XCTAssertNotNil(events[0]["sourceVersion"] as? String, file: file, line: line)
        XCTAssertEqual(events[1]["kind"] as? String, kind, file: file, line: line)
        XCTAssertEqual(events[1]["exitCode"] as? Int, code, file: file, line: line)
        XCTAssertEqual(events[1]["transient"] as? Bool, false, file: file, line: line)
        XCTAssertTrue((events[1]["message"] as? String ?? "").contains(mentions), "\(events[1])", file: file, line: line)
        XCTAssertEqual(events[2]["ok"] as? Bool, false, file: file, line: line)
        XCTAssertEqual(events[2]["exitCode"] as? Int, code, file: file, line: line)
        XCTAssertEqual(events[2]["disksCommitted"] as? Int, 0, file: file, line: line)
    }

    /// Regression: usage errors exited 64 (ArgumentParser's default), not 2, and `replicate`
    /// printed no event at all.
    func testRegression_UsageErrorsExit2WithTheErrorEvent() throws {
        let job = try h.writeJob(disks: [("disk0", h.dir + "/d.raw")])
        let cases: [([String], String, String)] = [
            (["replicate"], "", "--job"),
            (["replicate", "--job", job, "--bogus"], "vm1", "--bogus"),
            (["replicate", "--job", job, "--workers", "0"], "vm1", "--workers 0"),
            (["replicate", "--job=\(job)", "--workers", "many"], "vm1", "--workers"),
            (["replicate", "--job", job, "--log-level", "bogus"], "vm1", "trace, debug, info, notice, warning, error, critical"),
            (["replicate", "--job", h.dir + "/missing.json", "--log-level", "loud"], h.dir + "/missing.json", "--log-level"),
        ]
        for (args, label, mentions) in cases {
            let r = try AgentHarness.run([AgentHarness.source] + args + ["--log-file", h.dir + "/s.log"], timeout: 30)
            assertFailedPassEvents(r, code: 2, kind: "badArgument", job: label, mentions: mentions)
            XCTAssertTrue(r.stderr.contains(mentions), "\(args): \(r.stderr)")
        }
        for args in [["check-job"], ["check-job", "--job", job, "--bogus"], ["frobnicate"]] {
            let r = try AgentHarness.run([AgentHarness.source] + args, timeout: 30)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertEqual(r.stdout, "", "\(args)")
        }
        XCTAssertEqual(try AgentHarness.run([AgentHarness.source, "replicate", "--help"]).status, 0)
    }

    /// Regression: a bad job file emitted only an `error` with `job: ""`; the documented
    /// sequence ends with pass-finished, always.
    func testRegression_BadJobFileGivesTheWholeEventSequence() throws {
        let bad = h.dir + "/bad.json"
        try Data(#"{"job": "vm7", "blocksize": 65536, "target": {"transport": "exec", "command": ["x"]}, "disks": [{"name": "d", "source": "/x"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: bad))
        assertFailedPassEvents(try h.replicate(bad), code: 2, kind: "badJobFile", job: "vm7", mentions: "field 'blocksize': unknown field")
        // No usable job name: the events are labelled with the file as given.
        let garbage = h.dir + "/garbage.json"
        try Data("{\"job\": \"a/b\",".utf8).write(to: URL(fileURLWithPath: garbage))
        assertFailedPassEvents(try h.replicate(garbage), code: 2, kind: "badJobFile", job: garbage, mentions: "not valid JSON")
        assertFailedPassEvents(try h.replicate(h.dir + "/none.json"), code: 2, kind: "badJobFile", job: h.dir + "/none.json",
                               mentions: "No such file")
    }

    func testCheckJobJSON() throws {
        let good = try h.writeJob(disks: [("disk0", "/x"), ("disk1", "/y")])
        let ok = try AgentHarness.run([AgentHarness.source, "check-job", "--json", "--job", good])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        let v = try XCTUnwrap(try JSONSerialization.jsonObject(with: ok.output) as? [String: Any], ok.stdout)
        XCTAssertEqual(v["valid"] as? Bool, true)
        XCTAssertEqual(v["job"] as? String, "vm1")
        XCTAssertEqual(v["disks"] as? [String], ["disk0", "disk1"])
        XCTAssertEqual(v["mode"] as? String, "differential")
        XCTAssertEqual(v["transport"] as? String, "exec")

        let bad = h.dir + "/bad.json"
        try Data(#"{"job": "vm1", "target": {"transport": "exec", "command": ["x"]}, "disks": [{"name": "d", "source": "/x", "blocksize": 1}]}"#.utf8)
            .write(to: URL(fileURLWithPath: bad))
        for (path, field) in [(bad, "disks[0].blocksize" as String?), (h.dir + "/missing.json", nil)] {
            let r = try AgentHarness.run([AgentHarness.source, "check-job", "--json", "--job", path])
            XCTAssertEqual(r.status, 2)
            let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: r.output) as? [String: Any], r.stdout)
            XCTAssertEqual(o["valid"] as? Bool, false)
            let e = try XCTUnwrap(o["error"] as? [String: Any])
            XCTAssertEqual(e["kind"] as? String, "badJobFile")
            XCTAssertEqual(e["field"] as? String, field)
            XCTAssertTrue((e["message"] as? String ?? "").contains(path), "\(e)")
        }
    }

    func testVersionNamesTheProtocol() throws {
        for agent in [AgentHarness.source, AgentHarness.target] {
            let r = try AgentHarness.run([agent, "--version"])
            XCTAssertEqual(r.status, 0)
            let name = URL(fileURLWithPath: agent).lastPathComponent
            XCTAssertTrue(r.stdout.hasPrefix("\(name) 0."), r.stdout)
            XCTAssertTrue(r.stdout.contains("(protocol 3)"), r.stdout)
        }
    }

    /// `--job` is a file for the source and a name for the target: each help says which.
    func testHelpSaysWhatJobMeans() throws {
        for sub in ["replicate", "check-job"] {
            let r = try AgentHarness.run([AgentHarness.source, sub, "--help"])
            XCTAssertTrue(r.stdout.contains("job FILE"), r.stdout)
        }
        for sub in ["verify", "rollback"] {
            let r = try AgentHarness.run([AgentHarness.target, sub, "--help"])
            XCTAssertTrue(r.stdout.contains("job NAME"), r.stdout)
        }
    }

    /// Regression: the job file was read whole before its 1 MiB limit was checked (a 2 GiB sparse
    /// file cost 2 GiB), and anything that is not a regular file was read too.
    func testRegression_JobFileSizeIsCheckedBeforeReading() throws {
        let big = h.dir + "/big.json"
        XCTAssertEqual(try AgentHarness.run(["/usr/bin/truncate", "-s", "2G", big]).status, 0)
        // Under a 1 GB address-space limit: reading the file whole would fail with ENOMEM.
        for sub in ["check-job", "replicate"] {
            let args = [AgentHarness.source, sub, "--job", big] + (sub == "replicate" ? ["--log-file", h.dir + "/s.log"] : [])
            let r = try AgentHarness.run(["/bin/bash", "-c", "ulimit -v 1000000; exec \"$0\" \"$@\""] + args, timeout: 30)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue((r.stderr + r.stdout).contains("2147483648 bytes, larger than the 1048576 bytes a job file may have"), r.stderr)
        }
        let fifo = h.dir + "/fifo.json"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let r = try h.replicate(fifo, timeout: 20)
        assertFailedPassEvents(r, code: 2, kind: "badJobFile", job: fifo, mentions: "a FIFO (named pipe), not a job file")
        for path in ["/dev/zero", h.dir] {
            let c = try AgentHarness.run([AgentHarness.source, "check-job", "--job", path], timeout: 20)
            XCTAssertEqual(c.status, 2, path)
            XCTAssertTrue(c.stderr.contains("not a job file"), c.stderr)
        }
    }
}
