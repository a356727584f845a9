import Foundation
import VZTestSupport
import XCTest

/// The real agents replicate every VMDK format qemu-img writes, and a three-link chain; the
/// replica equals `qemu-img convert -O raw` of the source byte for byte. Containers the source
/// does not read are refused before the target is contacted.
final class VMDKReplicationTests: XCTestCase {
    var h: AgentHarness!
    let mib: UInt64 = 1 << 20
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func replicateAndCompare(_ image: String, passes: Int = 1, file: StaticString = #filePath, line: UInt = #line) throws {
        let oracle = h.dir + "/oracle.raw"
        try QemuFixtures.oracle(image, into: oracle)
        let job = try h.writeJob(disks: [("disk0", image)])
        for pass in 1...passes {
            let r = try h.replicate(job, timeout: 120)
            XCTAssertEqual(r.status, 0, "pass \(pass): \(r.stdout) \(r.stderr)", file: file, line: line)
            XCTAssertTrue(try AgentHarness.filesEqual(oracle, h.root + "/vm1/disk0-flat.vmdk"),
                          "pass \(pass): replica of \(image) differs from qemu-img convert -O raw", file: file, line: line)
        }
    }

    func testVMDK_EveryQemuFormatReplicatesAsItsOracle() throws {
        let size = 12 * mib
        let w = QemuFixtures.scatteredWrites(size, pattern: 0x42)
        for sub in ["monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"] {
            let dir = h.dir + "/\(sub)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try QemuFixtures.create(dir + "/disk.vmdk", subformat: sub, size: size, writes: w)
            try h.cleanUpRoot()
            try replicateAndCompare(dir + "/disk.vmdk")
        }
        try QemuFixtures.makeRaw(h.dir + "/so.raw", size: size, writes: w)
        try QemuFixtures.convert(raw: h.dir + "/so.raw", to: h.dir + "/so.vmdk", subformat: "streamOptimized")
        try h.cleanUpRoot()
        try replicateAndCompare(h.dir + "/so.vmdk")
    }

    func testVMDK_AChainOfThreeLinksReplicatesMerged() throws {
        let dir = h.dir + "/vm"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let leaf = try QemuFixtures.chain(in: dir, size: 16 * mib)
        // Twice: the second pass is differential against the first and sends nothing new.
        try replicateAndCompare(leaf, passes: 2)
    }

    func testVMDK_AContainerItDoesNotReadIsRefusedBeforeTheTargetIsContacted() throws {
        let qcow = h.dir + "/d.qcow2"
        try QemuFixtures.run([QemuFixtures.qemuImg, "create", "-q", "-f", "qcow2", qcow, "1M"])
        let r = try h.replicate(try h.writeJob(disks: [("disk0", qcow)]), timeout: 30)
        XCTAssertEqual(r.status, 3, r.stdout + r.stderr)
        let e = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(e["kind"] as? String, "sourceUnsupported")
        XCTAssertEqual(e["disk"] as? String, "disk0")
        XCTAssertTrue((e["message"] as? String ?? "").contains("qemu-img convert -O raw"), "\(e)")
        XCTAssertEqual((FileManager.default.enumerator(atPath: h.root)?.allObjects as? [String]) ?? [], [])
    }

    func testVMDK_ABrokenChainIsASourceError() throws {
        let dir = h.dir + "/vm"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let leaf = try QemuFixtures.chain(in: dir, size: 8 * mib)
        try QemuFixtures.write(dir + "/base.vmdk", [QemuFixtures.Write(0x99, at: 0, 512)])
        let r = try h.replicate(try h.writeJob(disks: [("disk0", leaf)]), timeout: 30)
        XCTAssertEqual(r.status, 3, r.stdout + r.stderr)
        let e = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(e["kind"] as? String, "sourceIO")
        XCTAssertTrue((e["message"] as? String ?? "").contains("mid.vmdk: field 'parentCID'"), "\(e)")
        XCTAssertEqual((FileManager.default.enumerator(atPath: h.root)?.allObjects as? [String]) ?? [], [])
    }
}

extension AgentHarness {
    /// Empties the target root between replications of different sources under one disk name.
    func cleanUpRoot() throws {
        try? FileManager.default.removeItem(atPath: root)
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }
}
