import Foundation
import Glibc
import VZTransportSSH
import XCTest

/// The real agents end to end through a real sshd configured with the Appliance files: the
/// forced command runs the built `vzrepl-target`. Seed and incremental passes, errors that write
/// nothing on the target, and a link cut mid-pass that the target rolls back by itself.
final class SSHReplicationTests: XCTestCase {
    static var bin: String {
        if let b = ProcessInfo.processInfo.environment["VZREPL_BIN"], !b.isEmpty { return b }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }
    var sshd: SSHServerHarness!
    var work: String!
    let bs = 65536

    override func setUpWithError() throws {
        sshd = try SSHServerHarness(agentPath: Self.bin + "/vzrepl-target")
        work = sshd.dir + "/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() {
        sshd.assertOnlyAES256()  // every session of every test, by sshd's own log
        sshd.stop()
        sshd.removeFiles()
    }

    func makeDisk(_ path: String, blocks: Int, seed: UInt8) throws {
        var data = Data(count: blocks * bs)
        data.withUnsafeMutableBytes { raw in
            var x = UInt64(seed) &* 0x9E37_79B9_7F4A_7C15
            for i in stride(from: 0, to: raw.count / 2, by: 8) {  // first half random, second half zeros
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                raw.storeBytes(of: x, toByteOffset: i, as: UInt64.self)
            }
        }
        try data.write(to: URL(fileURLWithPath: path))
    }

    func overwrite(_ path: String, block: Int, byte: UInt8) throws {
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try h.seek(toOffset: UInt64(block * bs))
        try h.write(contentsOf: Data(repeating: byte, count: bs))
        try h.close()
    }

    func job(disk: String, pin: String? = nil, identity: String? = nil) throws -> String {
        let target: [String: Any] = ["transport": "ssh", "host": "127.0.0.1", "port": sshd.port, "user": String(cString: getpwuid(geteuid()).pointee.pw_name),
                                     "identity": identity ?? sshd.userKey, "hostKeySHA256": pin ?? sshd.hostKeyFingerprint,
                                     "idleTimeoutSeconds": 10]
        let obj: [String: Any] = ["job": "vm1", "blockSize": bs, "target": target, "disks": [["name": "disk0", "source": disk]]]
        let path = work + "/job-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    func replicate(_ job: String) throws -> SSHServerHarness.ToolResult {
        try SSHServerHarness.runTool(Self.bin + "/vzrepl-source", ["replicate", "--job", job, "--log-file", work + "/source.log"], timeout: 60)
    }

    func events(_ r: SSHServerHarness.ToolResult, _ name: String) -> [[String: Any]] {
        r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            .filter { $0["event"] as? String == name }
    }

    var replica: String { sshd.root + "/vm1/disk0-flat.vmdk" }

    func testSeedAndIncrementalPassThroughSSHD() throws {
        let disk = work + "/disk0.raw"
        try makeDisk(disk, blocks: 64, seed: 1)
        let j = try job(disk: disk)
        let seed = try replicate(j)
        XCTAssertEqual(seed.status, 0, seed.stdout + seed.stderr)
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/cmp", [disk, replica]).status, 0)
        try overwrite(disk, block: 5, byte: 0xAA)
        try overwrite(disk, block: 40, byte: 0x55)  // a block in the zero half
        let inc = try replicate(j)
        XCTAssertEqual(inc.status, 0, inc.stdout + inc.stderr)
        XCTAssertEqual(events(inc, "disk-finished").first?["dataBlocks"] as? Int, 2)
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/cmp", [disk, replica]).status, 0)
        let log = (try? String(contentsOfFile: work + "/source.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("cipher aes256-"), "the negotiated cipher is logged: \(log)")
        // sshd's side of it: two sessions, each the same AES-256 cipher both ways (GCM when the
        // source's libssh2 has it: the vendored 1.11.1; aes256-ctr with Debian's 1.10), and the
        // source's log names the same cipher.
        sshd.assertOnlyAES256(minimumKex: 2)
        let cipher = SSHTransport.libraryHasAESGCM ? "aes256-gcm@openssh.com" : "aes256-ctr"
        XCTAssertEqual(Set(sshd.kexLines.map(\.cipher)), [cipher], sshd.log)
        XCTAssertTrue(log.contains("cipher \(cipher)"), log)
    }

    /// Through sshd: two disks side by side (two SSH sessions) share one bandwidth limit, measured
    /// on the wire; both commit equal to their sources; then `plan` over SSH finds nothing to send.
    func testParallelDisksShareTheBandwidthLimitAndPlanWorksThroughSSHD() throws {
        let limit = 2 << 20
        let d0 = work + "/disk0.raw", d1 = work + "/disk1.raw"
        try makeDisk(d0, blocks: 64, seed: 3)
        try makeDisk(d1, blocks: 64, seed: 4)
        let base = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try job(disk: d0)))) as! [String: Any]
        var obj = base
        obj["disks"] = [["name": "disk0", "source": d0], ["name": "disk1", "source": d1]]
        obj["parallelDisks"] = 2
        obj["bandwidthLimit"] = limit
        let j = work + "/job-parallel.json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: j))
        let r = try replicate(j)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let finished = events(r, "disk-finished")
        XCTAssertEqual(finished.count, 2, r.stdout)
        let wire = finished.reduce(0.0) { $0 + (($1["wireBytes"] as? NSNumber)?.doubleValue ?? 0) }
        let seconds = (events(r, "pass-finished").first?["seconds"] as? NSNumber)?.doubleValue ?? 0
        XCTAssertGreaterThan(wire, Double(4 << 20), r.stdout)
        XCTAssertLessThanOrEqual(wire / seconds, 1.1 * Double(limit), "\(wire) bytes in \(seconds) s")
        XCTAssertGreaterThan(wire / seconds, 0.5 * Double(limit), "\(wire) bytes in \(seconds) s")
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/cmp", [d0, sshd.root + "/vm1/disk0-flat.vmdk"]).status, 0)
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/cmp", [d1, sshd.root + "/vm1/disk1-flat.vmdk"]).status, 0)
        sshd.assertOnlyAES256(minimumKex: 2)

        let plan = try SSHServerHarness.runTool(Self.bin + "/vzrepl-source", ["plan", "--job", j, "--log-file", work + "/source.log"], timeout: 60)
        XCTAssertEqual(plan.status, 0, plan.stdout + plan.stderr)
        let plans = events(plan, "disk-plan")
        XCTAssertEqual(plans.count, 2, plan.stdout)
        for p in plans {
            XCTAssertEqual(p["dataBlocks"] as? Int, 0, "\(p)")
            XCTAssertEqual(p["changedBytes"] as? Int, 0, "\(p)")
            XCTAssertEqual(p["generation"] as? Int, 1, "\(p)")
        }
    }

    /// Through sshd the forced command (Appliance/authorized_keys.template) logs to
    /// /var/log/vzrepl: both agents' lines of the pass carry the source's pass id, and neither
    /// log holds a byte of the private key.
    func testBothAgentsLogThePassIdThroughSSHD() throws {
        let targetLog = "/var/log/vzrepl/vzrepl-target.log"
        guard access("/var/log", W_OK) == 0 else { throw XCTSkip("/var/log is not writable: the forced command's log cannot be checked") }
        let disk = work + "/disk0.raw"
        try makeDisk(disk, blocks: 16, seed: 3)
        let r = try replicate(try job(disk: disk))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let passId = try XCTUnwrap(events(r, "pass-started").first?["passId"] as? String)
        let target = try String(contentsOfFile: targetLog, encoding: .utf8).split(separator: "\n").filter { $0.contains("pass=\(passId)") }
        XCTAssertTrue(target.contains { $0.contains("msg=\"session started\"") }, "\(target)")
        XCTAssertTrue(target.contains { $0.contains("msg=\"pass committed") && $0.contains("disk=disk0") }, "\(target)")
        XCTAssertTrue(target.allSatisfy { $0.hasPrefix("ts=") && $0.contains(" job=vm1") }, "\(target)")
        let source = try String(contentsOfFile: work + "/source.log", encoding: .utf8)
        XCTAssertTrue(source.split(separator: "\n").allSatisfy { $0.hasPrefix("ts=") && $0.contains("pass=\(passId)") }, source)
        let key = try String(contentsOfFile: sshd.userKey, encoding: .utf8)
        for line in key.split(separator: "\n") where !line.hasPrefix("-----") {
            XCTAssertFalse(source.contains(line) || target.contains { $0.contains(line) }, "key material in a log")
        }
    }

    func testWrongHostKeyPinFailsBeforeAnythingIsWritten() throws {
        let disk = work + "/disk0.raw"
        try makeDisk(disk, blocks: 8, seed: 2)
        let r = try replicate(try job(disk: disk, pin: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"))
        XCTAssertEqual(r.status, 4, r.stdout)
        let e = try XCTUnwrap(events(r, "error").first)
        XCTAssertEqual(e["kind"] as? String, "hostKeyMismatch")
        XCTAssertTrue((e["message"] as? String ?? "").contains(sshd.hostKeyFingerprint), "the offered fingerprint is shown")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: sshd.root), [])
    }

    func testRefusedKeyIsAnAuthenticationError() throws {
        let disk = work + "/disk0.raw"
        try makeDisk(disk, blocks: 8, seed: 3)
        try SSHServerHarness.keygen(work + "/other_key", comment: "not-authorized")
        let r = try replicate(try job(disk: disk, identity: work + "/other_key"))
        XCTAssertEqual(r.status, 4, r.stdout)
        XCTAssertEqual(events(r, "error").first?["kind"] as? String, "authenticationFailed")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: sshd.root), [])
    }

    /// The connection dies mid-pass (the sshd session process is killed, as when the link to the
    /// target VA goes): the source reports a transport error, the target's agent sees its input
    /// end and rolls the replica back to the seed, with no working file left.
    func testLinkCutMidPassRollsTheReplicaBack() throws {
        let disk = work + "/disk0.raw"
        try makeDisk(disk, blocks: 1024, seed: 4)  // 64 MiB
        let j = try job(disk: disk)
        XCTAssertEqual(try replicate(j).status, 0)
        let old = try SSHServerHarness.runTool("/usr/bin/sha256sum", [replica]).stdout.prefix(64)
        // Change every block so the pass runs long enough to be cut.
        try makeDisk(disk, blocks: 1024, seed: 5)
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: disk))
        try h.seek(toOffset: UInt64(512 * bs))
        try h.write(contentsOf: Data(repeating: 0x77, count: 512 * bs))
        try h.close()

        let pid = try SSHServerHarness.spawn(Self.bin + "/vzrepl-source", ["replicate", "--job", j, "--log-file", work + "/source.log"],
                                             stdout: work + "/cut.out", stderr: work + "/cut.err")
        // Wait until the target journals (it is writing), then kill sshd's session processes.
        let journal = sshd.root + "/vm1/disk0.vzundo"
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: journal) && Date() < deadline { usleep(2_000) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: journal), "the pass never started writing")
        // Only this test's sshd: every process below its master except the agent itself, which
        // must see its input end and clean up by itself.
        let master = try String(contentsOfFile: sshd.dir + "/sshd.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let table = try SSHServerHarness.runTool("/bin/ps", ["-e", "-o", "pid=,ppid=,comm="]).stdout
        var children: [String: [(pid: String, comm: String)]] = [:]
        for line in table.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            if f.count >= 3 { children[f[1], default: []].append((f[0], f[2])) }
        }
        var queue = [master], cut = 0
        while let p = queue.popLast() {
            for c in children[p] ?? [] {
                queue.append(c.pid)
                if !c.comm.hasPrefix("vzrepl-target"), let pid = Int32(c.pid) { kill(pid, SIGKILL); cut += 1 }
            }
        }
        XCTAssertGreaterThan(cut, 0, "no sshd session process found to cut")
        var status: Int32?
        let end = Date().addingTimeInterval(30)
        while status == nil && Date() < end { status = SSHServerHarness.reap(pid); usleep(10_000) }
        if status == nil { kill(pid, SIGKILL) }
        XCTAssertEqual(status, 4, (try? String(contentsOfFile: work + "/cut.out", encoding: .utf8)) ?? "")
        // The target agent notices the closed pipe, rolls back and exits.
        let settled = Date().addingTimeInterval(30)
        while FileManager.default.fileExists(atPath: journal) && Date() < settled { usleep(20_000) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: journal), "the target did not roll back by itself")
        XCTAssertFalse(FileManager.default.fileExists(atPath: sshd.root + "/vm1/vzundo-script"))
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/sha256sum", [replica]).stdout.prefix(64), old)
        // And the next pass converges.
        let again = try replicate(j)
        XCTAssertEqual(again.status, 0, again.stdout)
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/cmp", [disk, replica]).status, 0)
    }
}
