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

    /// A job with the target command wrapped in `env VARS`, and target fields set.
    func job(src: String, targetEnvironment: [String] = [], targetArgs: [String] = [], fields: [String: Any]) throws -> String {
        var obj = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try h.writeJob(disks: [("disk0", src)], extraTargetArgs: targetArgs)))) as! [String: Any]
        var target = obj["target"] as! [String: Any]
        for (k, v) in fields { target[k] = v }
        if !targetEnvironment.isEmpty { target["command"] = ["/usr/bin/env"] + targetEnvironment + (target["command"] as! [String]) }
        obj["target"] = target
        let path = h.dir + "/job-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Hashing a large unchanged disk slowly is progress, not a stuck source: a target whose
    /// progress timeout is 2 s (and idle timeout 3 s) waits out a ~5 s hash, because the source's
    /// beats carry the bytes it has hashed.
    func testASlowUnchangedDiskHashIsProgressForATargetWithAShortProgressTimeout() throws {
        let src = try disk(blocks: 32)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", src)])).status, 0)
        let job = try h.writeJob(disks: [("disk0", src)], extraTargetArgs: ["--idle-timeout", "3", "--progress-timeout", "2"])
        let r = try h.replicate(job, environment: ["VZREPL_FAULT": "delay-read:300"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.finished()?["sentBytes"] as? Int, 0)
        XCTAssertGreaterThan(r.finished()?["seconds"] as? Double ?? 0, 4, "the hash was not slow: the test proves nothing")
    }

    /// Rebuilding a map by hashing the replica slowly (300 ms a read on the target, ~5 s) is
    /// progress for a source whose progress timeout is 2 s: the target's beats carry its disk I/O.
    func testASlowMapRebuildIsProgressForASourceWithAShortProgressTimeout() throws {
        let src = try disk(blocks: 32)
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", src)])).status, 0)
        try FileManager.default.removeItem(atPath: h.root + "/vm1/disk0.vzmap")
        let started = Date()
        let r = try h.replicate(try job(src: src, targetEnvironment: ["VZREPL_FAULT=delay-read:300"],
                                        fields: ["idleTimeoutSeconds": 3, "progressTimeoutSeconds": 2]))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.finished()?["mapStatus"] as? String, "rebuilt", r.stdout)
        XCTAssertEqual(r.finished()?["sentBytes"] as? Int, 0)
        XCTAssertGreaterThan(Date().timeIntervalSince(started), 4, "the rebuild was not slow: the test proves nothing")
    }

    /// A commit whose fsyncs take 1 s each is progress too (each finished fsync counts), for a
    /// source whose progress timeout is 3 s.
    func testASlowCommitIsProgressForASourceWithAShortProgressTimeout() throws {
        let src = try disk(blocks: 8)
        let r = try h.replicate(try job(src: src, targetEnvironment: ["VZREPL_FAULT=delay-fsync:1000"],
                                        fields: ["idleTimeoutSeconds": 5, "progressTimeoutSeconds": 3]))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertGreaterThan(r.finished()?["seconds"] as? Double ?? 0, 4, "the commit was not slow: the test proves nothing")
    }

    /// A target stuck in one fsync (20 s) sends keepalives all along: alive, but no progress. A
    /// source with a 2 s progress timeout gives up on it with `timeout`, saying so.
    func testATargetThatOnlySendsKeepalivesTimesOut() throws {
        let src = try disk(blocks: 4)
        let started = Date()
        let r = try h.replicate(try job(src: src, targetEnvironment: ["VZREPL_FAULT=delay-fsync:20000"],
                                        fields: ["idleTimeoutSeconds": 3, "progressTimeoutSeconds": 2]))
        XCTAssertEqual(r.status, 4, r.stdout)
        let e = try XCTUnwrap(r.events("error").first, r.stdout)
        XCTAssertEqual(e["kind"] as? String, "timeout")
        XCTAssertTrue((e["message"] as? String ?? "").contains("no progress"), "\(e)")
        XCTAssertEqual(e["transient"] as? Bool, true)
        // 2 s without progress, then the child gets 3 s to exit and 5 s after SIGTERM.
        XCTAssertLessThan(Date().timeIntervalSince(started), 15)
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
