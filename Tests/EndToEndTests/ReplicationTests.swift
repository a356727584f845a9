import Foundation
import XCTest

/// End to end with the real executables over the exec transport: seed, incremental, no-change,
/// zeroed regions, map fallback; the independent oracles are `cmp` and `qemu-img`.
final class ReplicationTests: XCTestCase {
    var h: AgentHarness!
    let bs = 65536
    let blocks = 512  // a 32 MiB disk

    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    /// 32 MiB: random, text and zero regions, plus untouched holes.
    func makeSourceDisk() throws -> String {
        let path = h.dir + "/disk0.raw"
        try AgentHarness.makeImage(path, size: UInt64(bs * blocks))
        try AgentHarness.write(AgentHarness.randomBytes(64 * bs, seed: 1), to: path, at: 0)
        try AgentHarness.write(AgentHarness.textBytes(96 * bs, seed: 5), to: path, at: UInt64(100 * bs))
        try AgentHarness.write(Data(count: 32 * bs), to: path, at: UInt64(200 * bs))  // explicit zeros (allocated)
        try AgentHarness.write(AgentHarness.randomBytes(64 * bs, seed: 2), to: path, at: UInt64(300 * bs))
        return path
    }

    func replica(_ job: String = "vm1", _ disk: String = "disk0") -> String { "\(h.root)/\(job)/\(disk)-flat.vmdk" }

    func testSeedThenIncrementalAppliesOnlyTheChangedAndZeroedBlocks() throws {
        let src = try makeSourceDisk()
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs)

        let seed = try h.replicate(job)
        XCTAssertEqual(seed.status, 0, seed.stderr)
        XCTAssertTrue(try AgentHarness.filesEqual(src, replica()), "replica differs from the source after the seed")
        let s = try XCTUnwrap(seed.finished())
        XCTAssertEqual(s["mapStatus"] as? String, "created")
        // 224 non-zero blocks; the 32 explicit zero blocks are not sent as data.
        XCTAssertEqual(s["dataBlocks"] as? Int, 224)
        XCTAssertEqual(s["changedBytes"] as? Int, 224 * bs)
        XCTAssertLessThan(s["sentBytes"] as! Int, 224 * bs, "lz4 should shrink the text region")
        for name in ["pass-started", "disk-started", "disk-finished", "pass-finished"] {
            XCTAssertEqual(seed.events(name).count, 1, "missing event \(name): \(seed.stdout)")
        }

        // Change 1% of the blocks (5 of 512) and turn a data region of 4 blocks to zeros.
        let changed = [3, 50, 120, 310, 363]
        for (i, b) in changed.enumerated() {
            try AgentHarness.write(AgentHarness.randomBytes(bs, seed: UInt64(100 + i)), to: src, at: UInt64(b * bs))
        }
        try AgentHarness.write(Data(count: 4 * bs), to: src, at: UInt64(20 * bs))

        let inc = try h.replicate(job)
        XCTAssertEqual(inc.status, 0, inc.stderr)
        let f = try XCTUnwrap(inc.finished())
        XCTAssertEqual(f["mapStatus"] as? String, "valid")
        XCTAssertEqual(f["dataBlocks"] as? Int, changed.count)
        XCTAssertEqual(f["zeroBytes"] as? Int, 4 * bs)
        XCTAssertEqual(f["changedBytes"] as? Int, (changed.count + 4) * bs)
        XCTAssertEqual(f["generation"] as? Int, 2)
        XCTAssertTrue(try AgentHarness.filesEqual(src, replica()), "replica differs from the source after the incremental pass")

        // Independent oracles: qemu-img reads our descriptor and agrees byte for byte.
        let cmp = try AgentHarness.run(["/usr/bin/qemu-img", "compare", "-f", "raw", "-F", "vmdk", src, "\(h.root)/vm1/disk0.vmdk"])
        XCTAssertEqual(cmp.status, 0, "qemu-img compare: \(cmp.stdout) \(cmp.stderr)")
        let converted = h.dir + "/converted.raw"
        let conv = try AgentHarness.run(["/usr/bin/qemu-img", "convert", "-O", "raw", "\(h.root)/vm1/disk0.vmdk", converted])
        XCTAssertEqual(conv.status, 0, conv.stderr)
        XCTAssertTrue(try AgentHarness.filesEqual(src, converted))

        let verify = try AgentHarness.run([AgentHarness.target, "verify", "--root", h.root, "--job", "vm1", "--disk", "disk0"])
        XCTAssertEqual(verify.status, 0, verify.stdout)
    }

    func testNoChangePassSendsNothing() throws {
        let src = try makeSourceDisk()
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs)
        XCTAssertEqual(try h.replicate(job).status, 0)
        let again = try h.replicate(job)
        XCTAssertEqual(again.status, 0, again.stderr)
        let f = try XCTUnwrap(again.finished())
        XCTAssertEqual(f["sentBytes"] as? Int, 0)
        XCTAssertEqual(f["changedBytes"] as? Int, 0)
        XCTAssertEqual(f["zeroBytes"] as? Int, 0)
        XCTAssertEqual(f["dataBlocks"] as? Int, 0)
    }

    func testZeroRegionsStayHolesOnTheTarget() throws {
        let src = h.dir + "/sparse.raw"
        try AgentHarness.makeImage(src, size: 64 << 20)
        try AgentHarness.write(AgentHarness.randomBytes(1 << 20, seed: 9), to: src, at: 10 << 20)
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs)
        XCTAssertEqual(try h.replicate(job).status, 0)
        let du = try AgentHarness.run(["/usr/bin/du", "-k", "--apparent-size", replica()]).stdout
        let allocated = try AgentHarness.run(["/usr/bin/du", "-k", replica()]).stdout
        XCTAssertEqual(Int(du.split(separator: "\t")[0]), 64 * 1024)
        XCTAssertLessThanOrEqual(Int(allocated.split(separator: "\t")[0])!, 2 * 1024, "zero extents must stay holes")
    }

    func testWhitespaceOffSendsZeroBlocksAsData() throws {
        let src = h.dir + "/zeros.raw"
        try AgentHarness.makeImage(src, size: UInt64(16 * bs))
        try AgentHarness.write(AgentHarness.randomBytes(bs, seed: 3), to: src, at: 0)
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs, whitespace: false)
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        let f = try XCTUnwrap(r.finished())
        XCTAssertEqual(f["dataBlocks"] as? Int, 16)
        XCTAssertEqual(f["zeroBytes"] as? Int, 0)
        XCTAssertTrue(try AgentHarness.filesEqual(src, replica()))
    }

    func testCorruptMapIsNotTrustedAndThePassStillConverges() throws {
        let src = try makeSourceDisk()
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs)
        XCTAssertEqual(try h.replicate(job).status, 0)
        // Flip one bit in the middle of the map's entries.
        let mapPath = "\(h.root)/vm1/disk0.vzmap"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: mapPath))
        bytes[bytes.count / 2] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: mapPath))
        try AgentHarness.write(AgentHarness.randomBytes(bs, seed: 77), to: src, at: UInt64(7 * bs))

        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        let untrusted = r.events("map-untrusted")
        XCTAssertEqual(untrusted.count, 1, r.stdout)
        XCTAssertTrue((untrusted.first?["reason"] as? String ?? "").contains("CRC32C"), "\(untrusted)")
        let f = try XCTUnwrap(r.finished())
        XCTAssertEqual(f["mapStatus"] as? String, "rebuilt")
        // The rebuilt map comes from the replica itself, so only the one changed block travels.
        XCTAssertEqual(f["dataBlocks"] as? Int, 1)
        XCTAssertTrue(try AgentHarness.filesEqual(src, replica()))
        let verify = try AgentHarness.run([AgentHarness.target, "verify", "--root", h.root, "--job", "vm1", "--disk", "disk0"])
        XCTAssertEqual(verify.status, 0, verify.stdout)
        // And the next pass trusts the new map again.
        let next = try h.replicate(job)
        XCTAssertEqual(next.finished()?["mapStatus"] as? String, "valid")
        XCTAssertEqual(next.finished()?["sentBytes"] as? Int, 0)
    }

    func testMissingMapIsRebuilt() throws {
        let src = try makeSourceDisk()
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs)
        XCTAssertEqual(try h.replicate(job).status, 0)
        try FileManager.default.removeItem(atPath: "\(h.root)/vm1/disk0.vzmap")
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.finished()?["mapStatus"] as? String, "rebuilt")
        XCTAssertEqual(r.finished()?["dataBlocks"] as? Int, 0)
    }

    func testBlockSizeChangeRebuildsTheMap() throws {
        let src = try makeSourceDisk()
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", src)], blockSize: bs)).status, 0)
        let r = try h.replicate(try h.writeJob(disks: [("disk0", src)], blockSize: 4 * bs))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.finished()?["mapStatus"] as? String, "rebuilt")
        XCTAssertEqual(r.finished()?["dataBlocks"] as? Int, 0)
        XCTAssertTrue(try AgentHarness.filesEqual(src, replica()))
    }

    func testSeveralDisksInOneJob() throws {
        let a = try makeSourceDisk()
        let b = h.dir + "/disk1.raw"
        try AgentHarness.makeImage(b, size: 3 * UInt64(bs) + 4096)  // a short last block
        try AgentHarness.write(AgentHarness.randomBytes(3 * bs + 4096, seed: 4), to: b, at: 0)
        let job = try h.writeJob(disks: [("disk0", a), ("disk1", b)], blockSize: bs)
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.events("disk-finished").count, 2)
        XCTAssertTrue(try AgentHarness.filesEqual(a, replica("vm1", "disk0")))
        XCTAssertTrue(try AgentHarness.filesEqual(b, replica("vm1", "disk1")))
    }

    func testVerifyNamesTheFirstDifferingBlock() throws {
        let src = try makeSourceDisk()
        XCTAssertEqual(try h.replicate(try h.writeJob(disks: [("disk0", src)], blockSize: bs)).status, 0)
        try AgentHarness.write(Data([0xFF]), to: replica(), at: UInt64(42 * bs + 17))
        let v = try AgentHarness.run([AgentHarness.target, "verify", "--root", h.root, "--job", "vm1", "--disk", "disk0"])
        XCTAssertEqual(v.status, 1)
        XCTAssertTrue(v.stdout.contains("block 42"), v.stdout)
    }

    func testStatusReportsGenerationAsJSON() throws {
        let src = try makeSourceDisk()
        let job = try h.writeJob(disks: [("disk0", src)], blockSize: bs)
        XCTAssertEqual(try h.replicate(job).status, 0)
        XCTAssertEqual(try h.replicate(job).status, 0)
        let s = try AgentHarness.run([AgentHarness.target, "status", "--root", h.root, "--json"])
        XCTAssertEqual(s.status, 0)
        let list = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(s.stdout.utf8)) as? [[String: Any]])
        XCTAssertEqual(list.count, 1)
        XCTAssertEqual(list[0]["generation"] as? Int, 2)
        XCTAssertEqual(list[0]["mapStatus"] as? String, "valid")
        XCTAssertEqual(list[0]["capacityBytes"] as? Int, bs * blocks)
    }
}
