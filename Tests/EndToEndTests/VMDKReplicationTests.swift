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

/// A job disk given as a VM's `.vmx` and node: the running chain is replicated, `disk-started`
/// reports the snapshots in it and the lateral ones, and (strace) no lateral link is opened.
final class VMDKVMFolderReplicationTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func testVMDK_AVMDiskReplicatesItsRunningChainAndSkipsLateralSnapshots() throws {
        let vm = h.dir + "/web01"
        try FileManager.default.createDirectory(atPath: vm, withIntermediateDirectories: true)
        typealias W = QemuFixtures.Write
        let size: UInt64 = 8 << 20
        try QemuFixtures.create(vm + "/base.vmdk", subformat: "monolithicSparse", size: size, writes: [W(0x10, at: 0, 2 << 20)])
        try QemuFixtures.create(vm + "/s1.vmdk", subformat: "monolithicSparse", size: size, backing: "base.vmdk", writes: [W(0x20, at: 1 << 20, 65536)])
        try QemuFixtures.create(vm + "/leaf.vmdk", subformat: "monolithicSparse", size: size, backing: "s1.vmdk", writes: [W(0x30, at: 3 << 20, 4096)])
        try QemuFixtures.create(vm + "/lateral.vmdk", subformat: "monolithicSparse", size: size, backing: "base.vmdk", writes: [W(0x99, at: 0, 1 << 20)])
        try Data("""
            .encoding = "UTF-8"
            scsi0:0.present = "TRUE"
            scsi0:0.fileName = "leaf.vmdk"

            """.utf8).write(to: URL(fileURLWithPath: vm + "/web01.vmx"))
        try Data("""
            snapshot.current = "2"
            snapshot0.uid = "1"
            snapshot0.displayName = "before-update"
            snapshot0.numDisks = "1"
            snapshot0.disk0.fileName = "base.vmdk"
            snapshot0.disk0.node = "scsi0:0"
            snapshot1.uid = "2"
            snapshot1.parent = "1"
            snapshot1.displayName = "update-a"
            snapshot1.numDisks = "1"
            snapshot1.disk0.fileName = "s1.vmdk"
            snapshot1.disk0.node = "scsi0:0"
            snapshot2.uid = "3"
            snapshot2.parent = "1"
            snapshot2.displayName = "update-b"
            snapshot2.numDisks = "1"
            snapshot2.disk0.fileName = "lateral.vmdk"
            snapshot2.disk0.node = "scsi0:0"

            """.utf8).write(to: URL(fileURLWithPath: vm + "/web01.vmsd"))
        let jobPath = try h.writeJob(disks: [("disk0", vm + "/web01.vmx")])
        // writeJob knows name and source only: add the node.
        var job = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: jobPath))) as! [String: Any]
        job["disks"] = [["name": "disk0", "source": vm + "/web01.vmx", "node": "scsi0:0"]]
        try JSONSerialization.data(withJSONObject: job).write(to: URL(fileURLWithPath: jobPath))
        let trace = h.dir + "/strace.out"
        let r = try AgentHarness.run(["/usr/bin/strace", "-f", "-qq", "-e", "trace=open,openat,openat2", "-o", trace,
                                      AgentHarness.source, "replicate", "--job", jobPath, "--log-file", h.dir + "/source.log"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        try QemuFixtures.oracle(vm + "/leaf.vmdk", into: h.dir + "/oracle.raw")
        XCTAssertTrue(try AgentHarness.filesEqual(h.dir + "/oracle.raw", h.root + "/vm1/disk0-flat.vmdk"))
        let opens = try String(contentsOfFile: trace, encoding: .utf8)
        XCTAssertTrue(opens.contains("\"leaf.vmdk\"") && opens.contains("\"base.vmdk\""), "strace saw no VMDK opens:\n\(opens.suffix(2000))")
        XCTAssertFalse(opens.contains("lateral.vmdk"), "the lateral link was opened")
        let started = try XCTUnwrap(r.events("disk-started").first)
        let snapshots = try XCTUnwrap(started["snapshots"] as? [String: Any], "\(started)")
        XCTAssertEqual((snapshots["inChain"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, ["before-update", "update-a"])
        XCTAssertEqual((snapshots["lateral"] as? [[String: Any]])?.compactMap { $0["file"] as? String }, ["lateral.vmdk"])
        XCTAssertEqual((started["chain"] as? [[String: Any]])?.compactMap { $0["file"] as? String }, ["leaf.vmdk", "s1.vmdk", "base.vmdk"])
        let log = try String(contentsOfFile: h.dir + "/source.log", encoding: .utf8)
        XCTAssertTrue(log.contains("lateral, not read: 3 'update-b' (lateral.vmdk)"), log)
    }
}

/// The target's CID record: written at every commit; a replica written out of band (its CID
/// changed, as ESXi changes it when the replica VM is powered on) is hashed, not trusted, and
/// the pass converges.
final class VMDKCIDRecordTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func record() throws -> (cid: UInt32, generation: UInt64) {
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: h.root + "/vm1/disk0.vzcid")))
        XCTAssertEqual(b.count, 38, "version 2, a raw source's empty chain")
        XCTAssertEqual(Array(b[0..<8]), Array("VZCIDREC".utf8))
        XCTAssertEqual(Array(b[8..<12]), [2, 0, 0, 0])
        XCTAssertEqual(Array(b[28..<34]), [1, 0, 0, 0, 0, 0], "chain known, no links")
        let cid = b[12..<16].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let gen = b[20..<28].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return (cid, gen)
    }

    func descriptorCID() throws -> String {
        let text = try String(contentsOfFile: h.root + "/vm1/disk0.vmdk", encoding: .utf8)
        return String(text.split(separator: "\n").first { $0.hasPrefix("CID=") }!.dropFirst(4))
    }

    func testVMDK_AReplicaWrittenOutOfBandIsHashedAndConverges() throws {
        let src = h.dir + "/d.raw"
        try AgentHarness.makeImage(src, size: 4 << 20)
        try AgentHarness.write(AgentHarness.randomBytes(2 << 20, seed: 3), to: src, at: 0)
        let job = try h.writeJob(disks: [("disk0", src)])
        XCTAssertEqual(try h.replicate(job).status, 0)
        let first = try record()
        XCTAssertEqual(first.generation, 1)
        XCTAssertEqual(String(format: "%08x", first.cid), try descriptorCID())
        let r2 = try h.replicate(job)
        XCTAssertEqual(r2.status, 0)
        XCTAssertEqual(r2.events("replica-modified").count, 0, r2.stdout)
        let second = try record()
        XCTAssertEqual(second.generation, 2)
        XCTAssertNotEqual(second.cid, first.cid)
        // Out of band: a write into the replica, and a new CID in its descriptor, as ESXi would.
        try AgentHarness.write(Data(repeating: 0xAB, count: 65536), to: h.root + "/vm1/disk0-flat.vmdk", at: 1 << 20)
        let desc = h.root + "/vm1/disk0.vmdk"
        let text = try String(contentsOfFile: desc, encoding: .utf8)
        try text.replacingOccurrences(of: "CID=\(try descriptorCID())", with: "CID=0badc0de")
            .write(toFile: desc, atomically: false, encoding: .utf8)
        let r3 = try h.replicate(job)
        XCTAssertEqual(r3.status, 0, r3.stdout + r3.stderr)
        let e = try XCTUnwrap(r3.events("replica-modified").first, r3.stdout)
        XCTAssertEqual(e["disk"] as? String, "disk0")
        XCTAssertTrue((e["reason"] as? String ?? "").contains("CID 0badc0de"), "\(e)")
        XCTAssertEqual(r3.events("disk-started").first?["mapStatus"] as? String, "replicaModified")
        XCTAssertGreaterThan(r3.finished()?["changedBytes"] as? Int ?? 0, 0, "the out-of-band write was repaired")
        XCTAssertTrue(try AgentHarness.filesEqual(src, h.root + "/vm1/disk0-flat.vmdk"))
        XCTAssertEqual(try record().generation, 3)
        let r4 = try h.replicate(job)
        XCTAssertEqual(r4.events("replica-modified").count, 0, "converged: the next pass trusts the map again")
        XCTAssertEqual(r4.events("disk-started").first?["mapStatus"] as? String, "valid")
    }
}

/// A grown source disk is a hardware change: passes fail (exit 3) until `vzrepl-target resize`
/// grows the replica the same way; then the pass is differential over the grown map.
final class VMDKResizeTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func resize(_ capacity: UInt64) throws -> AgentHarness.Result {
        try AgentHarness.run([AgentHarness.target, "resize", "--root", h.root, "--job", "vm1", "--disk", "disk0",
                              "--capacity", "\(capacity)", "--log-file", h.dir + "/resize.log"])
    }

    func testVMDK_ResizeGrowsTheReplicaAndItsMapAndRefusesShrinking() throws {
        let src = h.dir + "/d.raw"
        let old: UInt64 = (4 << 20) + 4096   // a short last block: it grows
        try AgentHarness.makeImage(src, size: old)
        try AgentHarness.write(AgentHarness.randomBytes(1 << 20, seed: 9), to: src, at: 0)
        try AgentHarness.write(AgentHarness.randomBytes(4096, seed: 10), to: src, at: 4 << 20)
        let job = try h.writeJob(disks: [("disk0", src)])
        XCTAssertEqual(try h.replicate(job).status, 0)
        // The source disk grows, with data in the new part.
        let new: UInt64 = 8 << 20
        let f = try FileHandle(forWritingTo: URL(fileURLWithPath: src))
        try f.truncate(atOffset: new)
        try f.close()
        try AgentHarness.write(AgentHarness.randomBytes(65536, seed: 11), to: src, at: 6 << 20)
        let refused = try h.replicate(job)
        XCTAssertEqual(refused.status, 3, refused.stdout)
        XCTAssertTrue((refused.events("error").first?["message"] as? String ?? "").contains("hardware changed"), refused.stdout)
        let shrink = try resize(1 << 20)
        XCTAssertNotEqual(shrink.status, 0)
        XCTAssertTrue(shrink.stdout.contains("shrinking it to 1048576 is refused"), shrink.stdout)
        let grow = try resize(new)
        XCTAssertEqual(grow.status, 0, grow.stdout + grow.stderr)
        XCTAssertTrue(grow.stdout.contains("grown from \(old) to \(new) bytes; map grown"), grow.stdout)
        let attrs = try FileManager.default.attributesOfItem(atPath: h.root + "/vm1/disk0-flat.vmdk")
        XCTAssertEqual(attrs[.size] as? UInt64, new)
        XCTAssertTrue(try String(contentsOfFile: h.root + "/vm1/disk0.vmdk", encoding: .utf8).contains("RW \(new / 512) VMFS"))
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.events("disk-started").first?["mapStatus"] as? String, "valid", "the grown map is trusted")
        XCTAssertEqual(r.events("replica-modified").count, 0, "resize records its own CID")
        XCTAssertTrue(try AgentHarness.filesEqual(src, h.root + "/vm1/disk0-flat.vmdk"))
        // Only the grown last block and the new data travel.
        XCTAssertLessThanOrEqual(r.finished()?["changedBytes"] as? Int ?? Int.max, 2 * 65536)
    }
}

/// The formats qemu-img cannot write, crafted byte by byte, through the real agents: an ESXi
/// chain vmfs flat <- COWD <- SEsparse and VMware's GD-at-end stream; each replica equals qemu's
/// reading of the same files.
final class VMDKCraftedReplicationTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    func testVMDK_CraftedESXiChainAndVMwareStreamReplicateAsTheirOracle() throws {
        let vm = h.dir + "/vm"
        try FileManager.default.createDirectory(atPath: vm, withIntermediateDirectories: true)
        let sectors: UInt64 = 16384
        func save(_ b: [UInt8], _ n: String) throws { try Data(b).write(to: URL(fileURLWithPath: vm + "/" + n)) }
        try save(Array(AgentHarness.randomBytes(Int(sectors) * 512, seed: 21)), "vm-flat.vmdk")
        try save(Array(VMDKCraft.descriptor(createType: "vmfs", cid: 0xa1, extents: ["RW \(sectors) VMFS \"vm-flat.vmdk\""]).utf8), "vm.vmdk")
        try save(VMDKCraft.cowd(capacitySectors: sectors, sectors: [0: [UInt8](repeating: 1, count: 512), 9000: [UInt8](repeating: 2, count: 512)]),
                 "vm-000001-delta.vmdk")
        try save(Array(VMDKCraft.descriptor(createType: "vmfsSparse", cid: 0xb2, parentCID: 0xa1, parentHint: "vm.vmdk",
                                            extents: ["RW \(sectors) VMFSSPARSE \"vm-000001-delta.vmdk\""]).utf8), "vm-000001.vmdk")
        try save(VMDKCraft.seSparse(capacitySectors: sectors, grains: [0: .zero, 5: .unmapped, 1000: .data([UInt8](repeating: 3, count: 4096))]),
                 "vm-000002-sesparse.vmdk")
        try save(Array(VMDKCraft.descriptor(createType: "seSparse", cid: 0xc3, parentCID: 0xb2, parentHint: "vm-000001.vmdk",
                                            extents: ["RW \(sectors) SESPARSE \"vm-000002-sesparse.vmdk\""]).utf8), "vm-000002.vmdk")
        let d = VMDKCraft.descriptor(createType: "streamOptimized", cid: 0xd4, extents: ["RW \(sectors) SPARSE \"so.vmdk\""])
        try save(VMDKCraft.vmwareStream(capacitySectors: sectors, descriptor: d,
                                        grains: [1: Array(AgentHarness.randomBytes(65536, seed: 22)), 100: [UInt8](repeating: 9, count: 65536)]),
                 "so.vmdk")
        // One job each: a job's disk set is fixed once it ran (Docs/operations.md).
        for (disk, leaf) in [("esxi", "vm-000002.vmdk"), ("stream", "so.vmdk")] {
            try QemuFixtures.oracle(vm + "/" + leaf, into: h.dir + "/\(disk).raw")
            let r = try h.replicate(try h.writeJob(job: "vm-\(disk)", disks: [(disk, vm + "/" + leaf)]), timeout: 120)
            XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
            XCTAssertTrue(try AgentHarness.filesEqual(h.dir + "/\(disk).raw", h.root + "/vm-\(disk)/\(disk)-flat.vmdk"), "\(leaf)")
        }
    }
}
