import Foundation
import Glibc
import XCTest

/// The target agent behind a real sshd fails: its forced command does not exist, or it is killed
/// mid-pass. The source must say so at once and precisely — `targetUnavailable` (permanent, the
/// exit status and the shell's last stderr line) for the first, `connectionLost` naming the signal,
/// well within the idle timeout, for the second.
final class SSHAgentFailureTests: XCTestCase {
    static var bin: String { SSHReplicationTests.bin }
    var sshd: SSHServerHarness?
    var work: String!
    let bs = 65536

    override func setUpWithError() throws {
        work = try SSHServerHarness.makeTempDir()
    }

    override func tearDown() {
        sshd?.stop()
        sshd?.removeFiles()
        try? FileManager.default.removeItem(atPath: work)
    }

    func job(disk: String, mode: String = "differential", idle: Double = 20) throws -> String {
        let s = try XCTUnwrap(sshd)
        let target: [String: Any] = ["transport": "ssh", "host": "127.0.0.1", "port": s.port,
                                     "user": String(cString: getpwuid(geteuid()).pointee.pw_name),
                                     "identity": s.userKey, "hostKeySHA256": s.hostKeyFingerprint, "idleTimeoutSeconds": idle]
        let obj: [String: Any] = ["job": "vm1", "mode": mode, "blockSize": bs, "target": target, "disks": [["name": "disk0", "source": disk]]]
        let path = work + "/job-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    func events(_ stdout: String, _ name: String) -> [[String: Any]] {
        stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["event"] as? String == name }
    }

    func makeDisk(_ path: String, blocks: Int, seed: UInt64) throws {
        var data = Data(count: blocks * bs)
        data.withUnsafeMutableBytes { raw in
            var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
            for i in stride(from: 0, to: raw.count, by: 8) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                raw.storeBytes(of: x, toByteOffset: i, as: UInt64.self)
            }
        }
        try data.write(to: URL(fileURLWithPath: path))
    }

    func testAForcedCommandThatDoesNotExistIsTargetUnavailable() throws {
        sshd = try SSHServerHarness(agentPath: "/nonexistent/vzrepl-target")
        let disk = work + "/d.raw"
        try makeDisk(disk, blocks: 4, seed: 1)
        let r = try SSHServerHarness.runTool(Self.bin + "/vzrepl-source",
                                             ["replicate", "--job", try job(disk: disk), "--log-file", work + "/source.log"], timeout: 60)
        XCTAssertEqual(r.status, 4, r.stdout)
        let e = try XCTUnwrap(events(r.stdout, "error").first, r.stdout)
        XCTAssertEqual(e["kind"] as? String, "targetUnavailable", r.stdout)
        XCTAssertEqual(e["transient"] as? Bool, false)
        let message = e["message"] as? String ?? ""
        XCTAssertTrue(message.contains("exited with status 127"), message)
        // The login shell's complaint ("sh: 1: …: not found", "bash: line 1: …: No such file or directory").
        XCTAssertTrue(message.contains("its last stderr line: ") && message.contains("/nonexistent/vzrepl-target:"), message)
    }

    /// Kills the real agent (its pid, written by a wrapper that then execs it) once the pass is
    /// writing, and returns the source's exit status, stdout and the seconds it took after the kill.
    func killAgentMidPass(mode: String, sourceEnvironment: [String]) throws -> (Int32?, String, Double) {
        let wrapper = work + "/agent-wrapper"
        let pidFile = work + "/agent.pid"
        try """
        #!/bin/sh
        echo $$ > '\(pidFile)'
        exec '\(Self.bin)/vzrepl-target' "$@" --log-file '\(work!)/target.log'
        """.write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        sshd = try SSHServerHarness(agentPath: wrapper)
        let disk = work + "/d.raw"
        try makeDisk(disk, blocks: 512, seed: 7)  // 32 MiB
        let j = try job(disk: disk, mode: mode, idle: 20)
        let seed = try SSHServerHarness.runTool(Self.bin + "/vzrepl-source", ["replicate", "--job", j, "--log-file", work + "/source.log"], timeout: 60)
        XCTAssertEqual(seed.status, 0, seed.stdout)
        try? FileManager.default.removeItem(atPath: pidFile)

        // The slow pass: 60 ms a block read, ~15 s for the disk.
        let pid = try SSHServerHarness.spawn("/usr/bin/env", sourceEnvironment + [Self.bin + "/vzrepl-source", "replicate", "--job", j, "--log-file", work + "/source.log"],
                                             stdout: work + "/pass.out", stderr: work + "/pass.err")
        defer { if SSHServerHarness.reap(pid) == nil { kill(pid, SIGKILL); _ = waitpid(pid, nil, 0) } }
        let journal = sshd!.root + "/vm1/disk0.vzundo"
        let deadline = Date().addingTimeInterval(30)
        while !(FileManager.default.fileExists(atPath: journal) && FileManager.default.fileExists(atPath: pidFile)) && Date() < deadline { usleep(5_000) }
        // Well into the pass, when the target's heartbeats wait unread in the channel (they hide
        // its EOF from libssh2_channel_eof).
        usleep(2_500_000)
        let agent = try XCTUnwrap(Int32(try String(contentsOfFile: pidFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(kill(agent, SIGKILL), 0)
        let killed = Date()
        var status: Int32?
        while status == nil && Date().timeIntervalSince(killed) < 40 { status = SSHServerHarness.reap(pid); usleep(10_000) }
        let out = (try? String(contentsOfFile: work + "/pass.out", encoding: .utf8)) ?? ""
        return (status, out, Date().timeIntervalSince(killed))
    }

    func assertDeathReported(_ status: Int32?, _ out: String, _ seconds: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(status, 4, out, file: file, line: line)
        XCTAssertLessThan(seconds, 5, "the idle timeout is 20 s: the death must be noticed at once", file: file, line: line)
        let e = try XCTUnwrap(events(out, "error").first, out, file: file, line: line)
        XCTAssertEqual(e["kind"] as? String, "connectionLost", out, file: file, line: line)
        XCTAssertTrue((e["message"] as? String ?? "").contains("killed by signal KILL"), "\(e)", file: file, line: line)
    }

    /// Killed while the source streams blocks (every block changed: a full pass).
    func testAnAgentKilledWhileBlocksAreSentIsReportedAtOnce() throws {
        let (status, out, seconds) = try killAgentMidPass(mode: "full", sourceEnvironment: ["VZREPL_FAULT=delay-read:60"])
        try assertDeathReported(status, out, seconds)
    }

    /// Killed while the source hashes an unchanged disk and sends only heartbeats.
    func testAnAgentKilledWhileTheSourceHashesIsReportedAtOnce() throws {
        let (status, out, seconds) = try killAgentMidPass(mode: "differential", sourceEnvironment: ["VZREPL_FAULT=delay-read:60"])
        try assertDeathReported(status, out, seconds)
    }
}
