import Foundation
import XCTest

/// What the controlling server sees when things go wrong: exit codes, error events, messages
/// that name the field or file, and a target left as it was.
final class FailureTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func testBadJobFileExitsWith2AndNamesTheField() throws {
        let path = h.dir + "/bad.json"
        try Data(#"{"job": "vm1", "blockSize": 1000, "target": {"transport": "exec", "command": ["x"]}, "disks": [{"name": "d", "source": "/x"}]}"#.utf8)
            .write(to: URL(fileURLWithPath: path))
        let r = try h.replicate(path)
        XCTAssertEqual(r.status, 2)
        let e = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(e["kind"] as? String, "badJobFile")
        XCTAssertTrue((e["message"] as? String ?? "").contains("blockSize"), "\(e)")
    }

    func testMissingSourceDiskExitsWith3() throws {
        let job = try h.writeJob(disks: [("disk0", h.dir + "/nope.raw")])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 3, r.stderr)
        XCTAssertEqual(r.events("error").first?["disk"] as? String, "disk0")
        XCTAssertTrue((r.events("error").first?["message"] as? String ?? "").contains("nope.raw"))
        XCTAssertEqual(r.events("pass-finished").first?["ok"] as? Bool, false)
    }

    func testMissingTargetRootIsATargetRefusal() throws {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 1 << 20)
        let job = try h.writeJob(disks: [("disk0", src)], extraTargetArgs: ["--root", h.dir + "/does-not-exist"])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 5, r.stdout + r.stderr)
        XCTAssertTrue((r.events("error").first?["message"] as? String ?? "").contains("does-not-exist"), r.stdout)
    }

    /// A target agent that exits before its banner will not start by itself on a retry:
    /// `targetUnavailable`, permanent, naming the exit status (Docs/events.md).
    func testUnstartableTargetIsAPermanentTargetUnavailable() throws {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 1 << 20)
        let obj: [String: Any] = ["job": "vm1", "target": ["transport": "exec", "command": ["/bin/false"]],
                                  "disks": [["name": "disk0", "source": src]]]
        let path = h.dir + "/job.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        let r = try h.replicate(path)
        XCTAssertEqual(r.status, 4, r.stdout)
        let e = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(e["kind"] as? String, "targetUnavailable", r.stdout)
        XCTAssertEqual(e["transient"] as? Bool, false)
        XCTAssertTrue((e["message"] as? String ?? "").contains("exited with status 1"), r.stdout)
    }

    /// A resized source disk is a hardware change (exit 3, hardwareChanged, Docs/events.md), refused
    /// before anything is written, with both sizes and what to do in the message.
    func testResizedSourceDiskIsASourceChangeAndLeavesTheReplica() throws {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 4 << 20)
        try AgentHarness.write(AgentHarness.randomBytes(1 << 20, seed: 1), to: src, at: 0)
        let job = try h.writeJob(disks: [("disk0", src)])
        XCTAssertEqual(try h.replicate(job).status, 0)
        let before = try AgentHarness.sha256("\(h.root)/vm1/disk0-flat.vmdk")
        try AgentHarness.makeImage(src + ".big", size: 8 << 20)
        try FileManager.default.removeItem(atPath: src)
        try FileManager.default.moveItem(atPath: src + ".big", toPath: src)
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 3, r.stdout)
        XCTAssertEqual(r.events("error").first?["kind"] as? String, "hardwareChanged", r.stdout)
        let message = r.events("error").first?["message"] as? String ?? ""
        XCTAssertTrue(message.contains("hardware changed") && message.contains("\(8 << 20)") && message.contains("\(4 << 20)"), message)
        XCTAssertEqual(try AgentHarness.sha256("\(h.root)/vm1/disk0-flat.vmdk"), before)
    }

    func testSamplesParseAndInvalidSamplesFailWithAMessage() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Docs/samples")
        let valid = try FileManager.default.contentsOfDirectory(atPath: docs.path).filter { $0.hasSuffix(".json") }
        XCTAssertFalse(valid.isEmpty)
        for f in valid {
            let r = try AgentHarness.run([AgentHarness.source, "check-job", "--job", docs.appendingPathComponent(f).path])
            XCTAssertEqual(r.status, 0, "\(f): \(r.stderr)")
        }
        let invalidDir = docs.appendingPathComponent("invalid")
        let invalid = try FileManager.default.contentsOfDirectory(atPath: invalidDir.path).filter { $0.hasSuffix(".json") }
        XCTAssertGreaterThanOrEqual(invalid.count, 5)
        for f in invalid {
            let r = try AgentHarness.run([AgentHarness.source, "check-job", "--job", invalidDir.appendingPathComponent(f).path])
            XCTAssertEqual(r.status, 2, f)
            // Each invalid sample names the field it breaks in its file name: "<field>--<why>.json"
            // ("JSON--...": the file is not JSON at all).
            let field = String(f.split(separator: "-").first ?? "")
            let named = field == "JSON" ? "not valid JSON" : "field '\(field)'"
            XCTAssertTrue(r.stderr.contains(named), "\(f): message does not name '\(field)': \(r.stderr)")
            if f.contains("unknown-field") {
                XCTAssertTrue(r.stderr.contains("unknown field (known: "), "\(f): \(r.stderr)")
            }
            // check-job --json reports the same field on its own.
            let j = try AgentHarness.run([AgentHarness.source, "check-job", "--json", "--job", invalidDir.appendingPathComponent(f).path])
            XCTAssertEqual(j.status, 2, f)
            let error = (try? JSONSerialization.jsonObject(with: j.output) as? [String: Any])?["error"] as? [String: Any]
            XCTAssertEqual(error?["field"] as? String, field == "JSON" ? nil : field, "\(f): \(j.stdout)")
        }
    }
}
