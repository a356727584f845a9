import Foundation
import XCTest

/// Long silent steps must not look like a dead peer: each side sends keepalives while it hashes
/// an unchanged disk or flushes a replica, so only a really dead peer trips an idle timeout.
final class HeartbeatTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func disk(blocks: Int) throws -> String {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: UInt64(blocks * 65536))
        try AgentHarness.write(AgentHarness.randomBytes(blocks * 65536, seed: 8), to: src, at: 0)
        return src
    }

    /// A slow source (300 ms a block read, ~5 s for the pass) against a target that gives up
    /// after 3 s of silence: the source's keepalives carry the pass through.
    func testTargetWaitsForASlowSourceThatKeepsSendingKeepalives() throws {
        let src = try disk(blocks: 32)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", src)])).status, 0)
        let job = try h.writeJob(disks: [("disk0", src)], extraTargetArgs: ["--idle-timeout", "3"])
        let r = try h.replicate(job, environment: ["VZREPL_FAULT": "delay-read:300"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.finished()?["sentBytes"] as? Int, 0)
        XCTAssertGreaterThan(r.finished()?["seconds"] as? Double ?? 0, 4, "the pass was not slow: the test proves nothing")
    }

    /// A target whose fsyncs take 1.5 s each (the commit flushes, renames and syncs the directory
    /// several times) against a source that gives up after 3 s of silence.
    func testSourceWaitsForASlowCommitThatKeepsSendingKeepalives() throws {
        let src = try disk(blocks: 8)
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try h.writeJob(disks: [("disk0", src)])))) as! [String: Any]
        var target = obj["target"] as! [String: Any]
        target["idleTimeoutSeconds"] = 3
        target["command"] = ["/usr/bin/env", "VZREPL_FAULT=delay-fsync:1500"] + (target["command"] as! [String])
        obj["target"] = target
        let path = h.dir + "/slow-commit.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        let r = try h.replicate(path)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertGreaterThan(r.finished()?["seconds"] as? Double ?? 0, 4, "the commit was not slow: the test proves nothing")
        XCTAssertTrue(try AgentHarness.filesEqual(src, "\(h.root)/vm1/disk0-flat.vmdk"))
    }

    /// And a peer that really is silent is still given up on.
    func testASilentTargetStillTimesOut() throws {
        let src = try disk(blocks: 4)
        let obj: [String: Any] = ["job": "vm1", "target": ["transport": "exec", "command": ["/bin/sleep", "30"], "idleTimeoutSeconds": 1],
                                  "disks": [["name": "disk0", "source": src]]]
        let path = h.dir + "/silent.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        let started = Date()
        let r = try h.replicate(path)
        XCTAssertEqual(r.status, 4)
        XCTAssertEqual(r.events("error").first?["kind"] as? String, "timeout", r.stdout)
        XCTAssertLessThan(Date().timeIntervalSince(started), 10)
    }
}
