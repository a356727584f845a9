import Foundation
import XCTest

/// The source reads a block device as well as an image file: a loop device stands in for the
/// HotAdd-attached disk (its size comes from BLKGETSIZE64, not st_size, and it has no holes).
final class BlockDeviceTests: XCTestCase {
    var h: AgentHarness!
    var loop: String?
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() {
        if let l = loop { _ = try? AgentHarness.run(["/sbin/losetup", "-d", l]) }
        h.cleanUp()
    }

    func testReplicatesFromABlockDevice() throws {
        let image = h.dir + "/backing.raw"
        try AgentHarness.makeImage(image, size: 8 << 20)
        try AgentHarness.write(AgentHarness.randomBytes(2 << 20, seed: 11), to: image, at: 1 << 20)
        let attach = try AgentHarness.run(["/sbin/losetup", "-f", "--show", image])
        guard attach.status == 0 else { throw XCTSkip("no loop device available here: \(attach.stderr)") }
        let dev = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        loop = dev

        let job = try h.writeJob(disks: [("disk0", dev)])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let f = try XCTUnwrap(r.finished())
        XCTAssertEqual(f["capacityBytes"] as? Int, 8 << 20, "the device's size comes from BLKGETSIZE64")
        XCTAssertEqual(f["scannedBytes"] as? Int, 8 << 20, "a device has no holes to skip: every byte is read")
        XCTAssertEqual(f["dataBlocks"] as? Int, 32, "2 MiB of data at 64 KiB blocks")
        XCTAssertTrue(try AgentHarness.filesEqual(dev, "\(h.root)/vm1/disk0-flat.vmdk"))

        // A write through the device is picked up by the next pass.
        try AgentHarness.write(AgentHarness.randomBytes(65536, seed: 12), to: dev, at: 6 << 20)
        let inc = try h.replicate(job)
        XCTAssertEqual(inc.status, 0, inc.stdout)
        XCTAssertEqual(inc.finished()?["dataBlocks"] as? Int, 1)
        XCTAssertTrue(try AgentHarness.filesEqual(dev, "\(h.root)/vm1/disk0-flat.vmdk"))
    }
}
