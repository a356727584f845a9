import Foundation
import XCTest

/// A source that cannot be a disk is a source error (exit 3), found before the target is
/// contacted: nothing is created on the target for it.
final class SourceDiskTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    /// Every file under the target root (the job folder included).
    func targetFiles() -> [String] {
        (FileManager.default.enumerator(atPath: h.root)?.allObjects as? [String]) ?? []
    }

    /// Regression: /dev/zero and /dev/null (size 0) and an empty file were a target refusal
    /// (exit 5), a directory left a 4096-byte uncommitted replica behind, a FIFO hung the pass.
    func testRegression_ASourceThatIsNotADiskIsASourceError() throws {
        let empty = h.dir + "/empty.raw"
        try AgentHarness.makeImage(empty, size: 0)
        let odd = h.dir + "/odd.raw"
        try AgentHarness.makeImage(odd, size: 1 << 20)
        try AgentHarness.write(Data(count: 100), to: odd, at: 1 << 20)   // 1 MiB + 100 bytes
        let directory = h.dir + "/adir"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fifo = h.dir + "/fifo.raw"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let cases: [(String, String)] = [
            ("/dev/zero", "is a character device, not a disk"),
            ("/dev/null", "is a character device, not a disk"),
            (empty, "is empty (0 bytes)"),
            (directory, "is a directory, not a disk"),
            (fifo, "is a FIFO (named pipe), not a disk"),
            (odd, "has 1048676 bytes, not a whole number of 512-byte sectors"),
        ]
        let good = h.dir + "/good.raw"
        try AgentHarness.makeImage(good, size: 1 << 20)
        for (source, why) in cases {
            // The bad disk comes second: the first, good one is not sent either.
            let job = try h.writeJob(disks: [("disk0", good), ("disk1", source)])
            let r = try h.replicate(job, timeout: 30)
            XCTAssertEqual(r.status, 3, "\(source): \(r.stdout) \(r.stderr)")
            let e = try XCTUnwrap(r.events("error").first, "\(source): \(r.stdout)")
            XCTAssertEqual(e["kind"] as? String, "sourceIO", source)
            XCTAssertEqual(e["disk"] as? String, "disk1", source)
            XCTAssertEqual(e["exitCode"] as? Int, 3, source)
            let message = e["message"] as? String ?? ""
            XCTAssertTrue(message.contains("disk 'disk1': \(source) \(why)"), "\(source): \(message)")
            XCTAssertEqual(r.events.last?["event"] as? String, "pass-finished", source)
            XCTAssertEqual(r.events("pass-finished").first?["ok"] as? Bool, false, source)
            XCTAssertEqual(r.events("disk-started").count, 0, source)
            XCTAssertEqual(targetFiles(), [], "\(source): the target was contacted")
        }
    }

    func testADiskThatIsAWholeNumberOfSectorsIsAccepted() throws {
        let src = h.dir + "/small.raw"
        try AgentHarness.makeImage(src, size: 512 * 3)
        try AgentHarness.write(AgentHarness.randomBytes(1536, seed: 5), to: src, at: 0)
        let r = try h.replicate(try h.writeJob(disks: [("disk0", src)]))
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(try AgentHarness.filesEqual(src, h.root + "/vm1/disk0-flat.vmdk"))
    }
}
