import Foundation
import XCTest
import VZCore
@testable import VZFormats
import VZTestSupport

/// `vzdisks` to the byte (Docs/formats.md §6), and chains whose parent lives in another folder of
/// a mapped datastore (Docs/vmdk.md, "Parents on other datastores"), in memory.
final class DiskSetFileTests: XCTestCase {
    func le32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    func testDiskSetRecordToTheByte() throws {
        let set = try DiskSetFile(disks: ["disk1", "disk0"])
        XCTAssertEqual(set.disks, ["disk0", "disk1"])
        var want: [UInt8] = Array("VZDSKSET".utf8) + [1, 0, 0, 0] + [2, 0, 0, 0] + [5] + Array("disk0".utf8) + [5] + Array("disk1".utf8)
        want += le32(CRC32C.checksum(want))
        XCTAssertEqual(set.encode(), want)
        XCTAssertEqual(want.count, 32)
        XCTAssertEqual(try DiskSetFile.decode(want, fileName: "vm1/vzdisks"), set)
        for i in 0..<want.count {
            var bad = want
            bad[i] ^= 0x08
            XCTAssertThrowsError(try DiskSetFile.decode(bad, fileName: "vm1/vzdisks"), "byte \(i)") { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap)
                XCTAssertTrue("\(e)".contains("vm1/vzdisks"), "\(e)")
            }
        }
        for n in 0..<want.count { XCTAssertThrowsError(try DiskSetFile.decode(Array(want[..<n]), fileName: "vm1/vzdisks"), "cut to \(n)") }
        XCTAssertThrowsError(try DiskSetFile.decode(want + [0], fileName: "vm1/vzdisks"))
    }

    func testDiskSetBadFieldsAreNamed() throws {
        func record(count: UInt32, _ entries: [UInt8]) -> [UInt8] {
            let b: [UInt8] = Array("VZDSKSET".utf8) + [1, 0, 0, 0] + le32(count) + entries
            return b + le32(CRC32C.checksum(b))
        }
        func refused(_ bytes: [UInt8], _ parts: [String], line: UInt = #line) {
            XCTAssertThrowsError(try DiskSetFile.decode(bytes, fileName: "j/vzdisks"), line: line) { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptMap, line: line)
                for p in parts { XCTAssertTrue("\(e)".contains(p), "\(e) lacks \(p)", line: line) }
            }
        }
        refused(record(count: 0, []), ["j/vzdisks", "field 'diskCount'", "1 to 4096"])
        refused(record(count: 4097, []), ["field 'diskCount'", "4097"])
        refused(record(count: 4000, [1, 0x61]), ["field 'diskCount'", "do not fit"])
        refused(record(count: 1, [0, 0x61]), ["field 'disks[0].nameLength'", "0 is not"])
        refused(record(count: 1, [65] + [UInt8](repeating: 0x61, count: 65)), ["field 'disks[0].nameLength'", "65"])
        refused(record(count: 1, [2, 0xC3, 0x28]), ["field 'disks[0].name'", "UTF-8"])
        refused(record(count: 1, [2, 0x2E, 0x2E]), ["field 'disks[0].name'", "'..'"])
        refused(record(count: 1, [6] + Array("a-flat".utf8)), ["field 'disks[0].name'", "-flat"])
        refused(record(count: 2, [1, 0x62, 1, 0x61]), ["field 'disks[1].name'", "sorted and unique"])
        refused(record(count: 2, [1, 0x61, 1, 0x61]), ["field 'disks[1].name'", "sorted and unique"])
        refused([UInt8](repeating: 0, count: DiskSetFile.maxSize + 1), ["j/vzdisks", "more than a disk set record"])
        var v2 = try DiskSetFile(disks: ["a"]).encode()
        v2[8] = 2
        refused(v2, ["field 'version'", "version 2"])
        XCTAssertThrowsError(try DiskSetFile(disks: []))
        XCTAssertThrowsError(try DiskSetFile(disks: ["a", "a"]))
        // The largest set fits the bound the reader allows.
        let names = (0..<4096).map { i in String(repeating: "d", count: 60) + String(format: "%04d", i) }
        XCTAssertEqual(try DiskSetFile(disks: names).encode().count, DiskSetFile.maxSize)
    }
}

final class VMDKDatastoreTests: XCTestCase {
    let ds = VMDKDatastores(["ds1": "/mnt/ds1", "5f3a-uuid": "/mnt/ds1", "ds2": "/mnt/ds2/"])

    func resolve(_ hint: String, from folder: String = "/mnt/ds1/web01") throws -> (String, String) {
        let r = try VMDKNames.resolveParent(hint, childFolder: folder, datastores: ds, field: "parentFileNameHint", in: "c.vmdk")
        return (r.folder, r.name)
    }

    func testParentHintsInsideMappedDatastoresResolve() throws {
        XCTAssertTrue(try resolve("base.vmdk") == ("/mnt/ds1/web01", "base.vmdk"))
        XCTAssertTrue(try resolve("/vmfs/volumes/ds2/tpl/base.vmdk") == ("/mnt/ds2/tpl", "base.vmdk"))
        XCTAssertTrue(try resolve("/vmfs/volumes/5f3a-uuid/tpl/x/base.vmdk") == ("/mnt/ds1/tpl/x", "base.vmdk"))
        XCTAssertTrue(try resolve("../tpl/base.vmdk") == ("/mnt/ds1/tpl", "base.vmdk"))
        XCTAssertTrue(try resolve("/mnt/ds2/base.vmdk") == ("/mnt/ds2", "base.vmdk"))
        XCTAssertTrue(try resolve("/vmfs/volumes/ds1/web01/base.vmdk") == ("/mnt/ds1/web01", "base.vmdk"))
        XCTAssertEqual(ds.mount(containing: "/mnt/ds2/a/b"), "/mnt/ds2")
        XCTAssertNil(ds.mount(containing: "/mnt/ds20/a"))
    }

    func testHintsThatEscapeAMappedDatastoreAreRefused() throws {
        for bad in ["/vmfs/volumes/ds2/../../etc/passwd", "/vmfs/volumes/ds2/..", "../../etc/base.vmdk", "/etc/passwd",
                    "/vmfs/volumes/ds3/tpl/base.vmdk", "/mnt/ds20/base.vmdk", "C:\\tpl\\base.vmdk", ""] {
            assertSourceError(["c.vmdk: field 'parentFileNameHint'"], bad) { try self.resolve(bad) }
        }
        assertSourceError(["leaves the datastore it names"]) { try self.resolve("/vmfs/volumes/ds2/../ds1/web01/x.vmdk") }
        // Without a mapping the message says what reads a parent elsewhere.
        assertSourceError(["outside the disk's folder /vm", "\"datastores\" mapping"]) {
            try VMDKNames.resolveParent("/vmfs/volumes/ds2/base.vmdk", childFolder: "/vm", datastores: VMDKDatastores(),
                                        field: "parentFileNameHint", in: "c.vmdk")
        }
    }

    final class Opener: VMDKFolderOpener {
        let folders: [String: MemoryVMDKFolder]
        var asked: [(String, String)] = []
        init(_ folders: [String: MemoryVMDKFolder]) { self.folders = folders }
        func access(folder: String, beneath mount: String) throws -> VMDKFileAccess {
            asked.append((folder, mount))
            guard let f = folders[folder] else { throw VZError(.sourceIO, "\(folder): no such folder") }
            return f
        }
    }

    /// A linked clone: the leaf in the VM's folder, its base (with its own extent) in a template
    /// folder of another datastore; reads go through both, the chain names the base by its path.
    func testChainWithTheBaseInAnotherDatastore() throws {
        let sectors: UInt64 = 16384
        let base = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: VMDKCraft.descriptor(
            createType: "monolithicSparse", cid: 7, extents: ["RW \(sectors) SPARSE \"base.vmdk\""]),
            grains: [0: [UInt8](repeating: 1, count: 65536), 1: [UInt8](repeating: 2, count: 65536)])
        let leaf = VMDKCraft.monolithicSparse(capacitySectors: sectors, descriptor: VMDKCraft.descriptor(
            createType: "monolithicSparse", cid: 8, parentCID: 7, parentHint: "/vmfs/volumes/ds2/tpl/base.vmdk",
            extents: ["RW \(sectors) SPARSE \"web01.vmdk\""]), grains: [1: [UInt8](repeating: 9, count: 65536)])
        let vmFolder = MemoryVMDKFolder(["web01.vmdk": leaf])
        let tpl = MemoryVMDKFolder(["base.vmdk": base])
        let opener = Opener(["/mnt/ds2/tpl": tpl])
        let c = try VMDKChain(leaf: "web01.vmdk", folder: "/mnt/ds1/web01", access: vmFolder, datastores: ds, opener: opener)
        XCTAssertEqual(c.links.count, 2)
        XCTAssertEqual(opener.asked.map(\.0), ["/mnt/ds2/tpl"])
        XCTAssertEqual(opener.asked.map(\.1), ["/mnt/ds2"])
        var b = [UInt8](repeating: 0, count: 2 * 65536)
        try b.withUnsafeMutableBytes { try c.read(at: 0, into: $0) }
        XCTAssertEqual(b, [UInt8](repeating: 1, count: 65536) + [UInt8](repeating: 9, count: 65536))
        XCTAssertEqual(c.sourceChain, [SourceChainLink(file: "web01.vmdk", cid: 8, parentCID: 7),
                                       SourceChainLink(file: "/mnt/ds2/tpl/base.vmdk", cid: 7, parentCID: 0xffffffff)])
        XCTAssertEqual(vmFolder.opened, ["web01.vmdk"])
        XCTAssertEqual(tpl.opened, ["base.vmdk"])
        // Without the mapping the same chain is refused before the base is opened.
        let unmapped = MemoryVMDKFolder(["web01.vmdk": leaf])
        assertSourceError(["web01.vmdk: field 'parentFileNameHint'", "outside the disk's folder"]) {
            try VMDKChain(leaf: "web01.vmdk", folder: "/mnt/ds1/web01", access: unmapped, opener: opener)
        }
        XCTAssertEqual(opener.asked.count, 1)
    }
}

/// The `records` fuzz target's seeds (Fuzz/corpus/records/) decode to what generate-corpus.swift
/// wrote, so the corpus stays meaningful when a format changes.
final class RecordFuzzSeedTests: XCTestCase {
    func seed(_ name: String) throws -> [UInt8] {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        return [UInt8](try Data(contentsOf: here.appendingPathComponent("../../Fuzz/corpus/records/\(name)").standardized))
    }

    func testRecordSeedsDecode() throws {
        XCTAssertEqual(try DiskSetFile.decode(try seed("vzdisks"), fileName: "vzdisks").disks, ["disk0", "disk1", "scsi0_1"])
        let v1 = try CIDRecordFile.decode(try seed("vzcid-v1"), fileName: "v1.vzcid")
        XCTAssertEqual(v1, CIDRecordFile(cid: 0x1234abcd, previousCID: 0x99, generation: 42))
        let v2 = try CIDRecordFile.decode(try seed("vzcid-v2"), fileName: "v2.vzcid")
        XCTAssertEqual(v2.chain?.map(\.file), ["web-000001.vmdk", "/mnt/ds2/tpl/base.vmdk"])
        XCTAssertNil(try CIDRecordFile.decode(try seed("vzcid-v2-unknown"), fileName: "u.vzcid").chain)
    }
}
