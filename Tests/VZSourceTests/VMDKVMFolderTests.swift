import Foundation
import XCTest
@testable import VZSource
import VZCore
import VZFormats
import VZTestSupport

/// A VM folder: the `.vmx` node's fileName is the running state's leaf; the `.vmsd` says which
/// snapshots are in its chain and which are lateral, and a lateral link is never opened.
final class VMDKVMFolderTests: XCTestCase {
    var dir: String!
    let mib: UInt64 = 1 << 20

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "vzrepl-vmdkvm-\(getpid())-\(UInt32.random(in: 0...UInt32.max))/web01"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: (dir as NSString).deletingLastPathComponent) }

    static let vmx = """
    .encoding = "UTF-8"
    config.version = "8"
    displayName = "web01"
    scsi0.present = "TRUE"
    scsi0:0.present = "TRUE"
    scsi0:0.fileName = "leaf.vmdk"
    scsi0:1.present = "FALSE"
    scsi0:1.fileName = "gone.vmdk"
    ide1:0.present = "TRUE"
    ide1:0.deviceType = "cdrom-image"
    ide1:0.fileName = "/iso/debian.iso"

    """

    static let vmsd = """
    .encoding = "UTF-8"
    snapshot.lastUID = "3"
    snapshot.current = "2"
    snapshot0.uid = "1"
    snapshot0.filename = "web01-Snapshot1.vmsn"
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
    snapshot12.uid = "3"
    snapshot12.parent = "1"
    snapshot12.displayName = "update-b"
    snapshot12.numDisks = "1"
    snapshot12.disk0.fileName = "lateral.vmdk"
    snapshot12.disk0.node = "scsi0:0"
    snapshot.numSnapshots = "3"

    """

    /// base <- s1 <- leaf (running), and lateral <- base (snapshot 3, taken after a revert to 1).
    static func makeVM(in dir: String, size: UInt64) throws {
        typealias W = QemuFixtures.Write
        try QemuFixtures.create(dir + "/base.vmdk", subformat: "monolithicSparse", size: size, writes: [W(0x10, at: 0, 2 << 20)])
        try QemuFixtures.create(dir + "/s1.vmdk", subformat: "monolithicSparse", size: size, backing: "base.vmdk",
                                writes: [W(0x20, at: 1 << 20, 65536)])
        try QemuFixtures.create(dir + "/leaf.vmdk", subformat: "monolithicSparse", size: size, backing: "s1.vmdk",
                                writes: [W(0x30, at: 3 << 20, 4096)])
        try QemuFixtures.create(dir + "/lateral.vmdk", subformat: "monolithicSparse", size: size, backing: "base.vmdk",
                                writes: [W(0x99, at: 0, 1 << 20)])
        try Data(vmx.utf8).write(to: URL(fileURLWithPath: dir + "/web01.vmx"))
        try Data(vmsd.utf8).write(to: URL(fileURLWithPath: dir + "/web01.vmsd"))
    }

    func testVMDK_VMXNodeReadsTheRunningChainAndNeverOpensALateralLink() throws {
        try Self.makeVM(in: dir, size: 8 * mib)
        let disk = try SourceReaderFactory.open(JobConfig.DiskConfig(name: "disk0", source: dir + "/web01.vmx", node: "scsi0:0"))
        let chain = try XCTUnwrap(disk.reader as? VMDKChain)
        XCTAssertEqual(chain.links.map(\.fileName), ["leaf.vmdk", "s1.vmdk", "base.vmdk"])
        let access = try XCTUnwrap(disk.access as? FolderFileAccess)
        XCTAssertFalse(access.opened.contains("lateral.vmdk"), "\(access.opened)")
        let snapshots = try XCTUnwrap(disk.eventFields["snapshots"] as? [String: Any])
        XCTAssertEqual(snapshots["current"] as? Int, 2)
        XCTAssertEqual((snapshots["inChain"] as? [[String: Any]])?.compactMap { $0["uid"] as? Int }, [1, 2])
        XCTAssertEqual((snapshots["lateral"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, ["update-b"])
        XCTAssertEqual((disk.eventFields["chain"] as? [[String: Any]])?.count, 3)
        // Equal to qemu's reading of the leaf.
        try QemuFixtures.oracle(dir + "/leaf.vmdk", into: dir + "/../oracle.raw")
        let expected = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/../oracle.raw")))
        var got = [UInt8](repeating: 0, count: expected.count)
        try got.withUnsafeMutableBytes { try chain.read(at: 0, into: $0) }
        XCTAssertTrue(got == expected)
    }

    func testVMDK_ABadNodeNamesTheVMXAndField() throws {
        try Self.makeVM(in: dir, size: 4 * mib)
        for (node, parts) in [("scsi0:2", ["web01.vmx: field 'scsi0:2.fileName'", "no disk at node scsi0:2", "scsi0:0"]),
                              ("scsi0:1", ["field 'scsi0:1.present' is FALSE"]),
                              ("ide1:0", ["field 'ide1:0.deviceType'", "not a disk"])] {
            XCTAssertThrowsError(try SourceReaderFactory.open(JobConfig.DiskConfig(name: "d", source: dir + "/web01.vmx", node: node))) { e in
                for p in parts { XCTAssertTrue("\(e)".contains(p), "\(node): \(e)") }
                XCTAssertTrue("\(e)".contains("disk 'd': "), "\(e)")
            }
        }
    }

    func testVMDK_VMSDParsesSnapshotsByIndexNotUid() throws {
        let db = try SnapshotDatabase.parse(Array(Self.vmsd.utf8), fileName: "web01.vmsd")
        XCTAssertEqual(db.current, 2)
        XCTAssertEqual(db.snapshots.map(\.uid), [1, 2, 3])
        XCTAssertEqual(db.snapshots[2].parent, 1)
        XCTAssertEqual(db.snapshots[2].disks["scsi0:0"], "lateral.vmdk")
        XCTAssertThrowsError(try SnapshotDatabase.parse(Array("snapshot0.uid = \"x\"\n".utf8), fileName: "v.vmsd")) { e in
            XCTAssertTrue("\(e)".contains("v.vmsd: field 'snapshot0.uid'"), "\(e)")
        }
    }
}

extension VMDKVMFolderTests {
    /// A .vmsd without snapshot.current still makes a disk-started that serializes (JSON null).
    func testVMDK_SnapshotFieldsAreJSONEvenWithoutACurrentSnapshot() throws {
        try Self.makeVM(in: dir, size: 4 * mib)
        try Data(Self.vmsd.replacingOccurrences(of: "snapshot.current = \"2\"\n", with: "").utf8)
            .write(to: URL(fileURLWithPath: dir + "/web01.vmsd"))
        let disk = try SourceReaderFactory.open(JobConfig.DiskConfig(name: "disk0", source: dir + "/web01.vmx", node: "scsi0:0"))
        XCTAssertTrue(JSONSerialization.isValidJSONObject(disk.eventFields), "\(disk.eventFields)")
        XCTAssertNoThrow(try JSONSerialization.data(withJSONObject: disk.eventFields))
    }
}

/// A VM whose second disk lives on another datastore: the `.vmx` names it by its ESXi path
/// `/vmfs/volumes/ds2/...`, read from the mount the job maps `ds2` to; unmapped, it is read at
/// that literal path (and here fails, naming it); a path that leaves the datastore is refused.
final class VMDKVMOtherDatastoreTests: XCTestCase {
    var top: String!
    override func setUpWithError() throws {
        top = NSTemporaryDirectory() + "vzrepl-vmds-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: top + "/ds1/web01", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: top + "/ds2/web01", withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: top) }

    func vmx(_ fileName: String) throws {
        try Data("""
            .encoding = "UTF-8"
            scsi0:1.present = "TRUE"
            scsi0:1.fileName = "\(fileName)"

            """.utf8).write(to: URL(fileURLWithPath: top + "/ds1/web01/web01.vmx"))
    }

    func testVMDK_AVMXDiskOnAnotherDatastoreIsReadFromItsMount() throws {
        try QemuFixtures.create(top + "/ds2/web01/web01_1.vmdk", subformat: "monolithicSparse", size: 4 << 20,
                                writes: [QemuFixtures.Write(0x5A, at: 0, 65536)])
        let disk = JobConfig.DiskConfig(name: "disk1", source: top + "/ds1/web01/web01.vmx", node: "scsi0:1")
        try vmx("/vmfs/volumes/ds2/web01/web01_1.vmdk")
        let chain = try XCTUnwrap(try SourceReaderFactory.open(disk, datastores: ["ds2": top + "/ds2"]).reader as? VMDKChain)
        XCTAssertEqual(chain.links.map(\.fileName), ["web01_1.vmdk"])
        var b = [UInt8](repeating: 0, count: 4)
        try b.withUnsafeMutableBytes { try chain.read(at: 0, into: $0) }
        XCTAssertEqual(b, [0x5A, 0x5A, 0x5A, 0x5A])
        XCTAssertThrowsError(try SourceReaderFactory.open(disk)) { e in
            XCTAssertTrue("\(e)".contains("/vmfs/volumes/ds2/web01"), "\(e)")
        }
        try vmx("/vmfs/volumes/ds2/../ds1/web01/x.vmdk")
        XCTAssertThrowsError(try SourceReaderFactory.open(disk, datastores: ["ds2": top + "/ds2"])) { e in
            XCTAssertTrue("\(e)".contains("leaves the datastore it names"), "\(e)")
        }
    }
}
