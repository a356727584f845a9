import Foundation
import Glibc
import XCTest

/// Issue 9 through a real sshd (the forced command runs the built `vzrepl-target`): a job that
/// gained a disk fails with hardwareChanged (exit 3) and writes nothing; after `add-disk` on the
/// target the pass seeds it; the commit records the chain in `.vzcid`.
final class SSHDiskSetTests: XCTestCase {
    static var bin: String {
        if let b = ProcessInfo.processInfo.environment["VZREPL_BIN"], !b.isEmpty { return b }
        return URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().path
    }
    var sshd: SSHServerHarness!
    var work: String!

    override func setUpWithError() throws {
        sshd = try SSHServerHarness(agentPath: Self.bin + "/vzrepl-target")
        work = sshd.dir + "/work"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    }

    override func tearDown() {
        sshd.stop()
        sshd.removeFiles()
    }

    func job(_ disks: [(String, String)]) throws -> String {
        let target: [String: Any] = ["transport": "ssh", "host": "127.0.0.1", "port": sshd.port,
                                     "user": String(cString: getpwuid(geteuid()).pointee.pw_name),
                                     "identity": sshd.userKey, "hostKeySHA256": sshd.hostKeyFingerprint, "idleTimeoutSeconds": 10]
        let obj: [String: Any] = ["job": "vm1", "blockSize": 65536, "target": target, "disks": disks.map { ["name": $0.0, "source": $0.1] }]
        let path = work + "/job-\(UUID().uuidString).json"
        try JSONSerialization.data(withJSONObject: obj).write(to: URL(fileURLWithPath: path))
        return path
    }

    func replicate(_ job: String) throws -> SSHServerHarness.ToolResult {
        try SSHServerHarness.runTool(Self.bin + "/vzrepl-source", ["replicate", "--job", job, "--log-file", work + "/source.log"], timeout: 60)
    }

    func listing() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: sshd.root + "/vm1") {
            out[name] = (try FileManager.default.attributesOfItem(atPath: sshd.root + "/vm1/" + name)[.size] as? Int) ?? -1
        }
        return out
    }

    func testAnAddedDiskThroughSSHIsRefusedThenSeededAfterAddDisk() throws {
        let d0 = work + "/d0.raw", d1 = work + "/d1.raw"
        try Data((0..<(512 << 10)).map { UInt8(truncatingIfNeeded: $0 * 7) }).write(to: URL(fileURLWithPath: d0))
        try Data((0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 * 13) }).write(to: URL(fileURLWithPath: d1))
        let first = try replicate(try job([("disk0", d0)]))
        XCTAssertEqual(first.status, 0, first.stdout + first.stderr)
        let before = try listing()
        let hash = try SSHServerHarness.runTool("/usr/bin/sha256sum", [sshd.root + "/vm1/disk0-flat.vmdk"]).stdout

        let both = try job([("disk0", d0), ("disk1", d1)])
        let r = try replicate(both)
        XCTAssertEqual(r.status, 3, r.stdout)
        XCTAssertTrue(r.stdout.contains("\"kind\":\"hardwareChanged\""), r.stdout)
        XCTAssertTrue(r.stdout.contains("add-disk"), r.stdout)
        XCTAssertEqual(try listing(), before, "the refused pass wrote something")
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/sha256sum", [sshd.root + "/vm1/disk0-flat.vmdk"]).stdout, hash)

        let add = try SSHServerHarness.runTool(Self.bin + "/vzrepl-target", ["add-disk", "--root", sshd.root, "--job", "vm1", "--disk", "disk1",
                                                                              "--log-file", work + "/add.log"])
        XCTAssertEqual(add.status, 0, add.stdout + add.stderr)
        let seeded = try replicate(both)
        XCTAssertEqual(seeded.status, 0, seeded.stdout + seeded.stderr)
        XCTAssertEqual(try SSHServerHarness.runTool("/usr/bin/cmp", [d1, sshd.root + "/vm1/disk1-flat.vmdk"]).status, 0)
        // A raw source: the record says the chain is known and empty.
        let rec = [UInt8](try XCTUnwrap(FileManager.default.contents(atPath: sshd.root + "/vm1/disk1.vzcid")))
        XCTAssertEqual(Array(rec[8..<12]), [2, 0, 0, 0])
        XCTAssertEqual(Array(rec[28..<34]), [1, 0, 0, 0, 0, 0])
    }
}
