import VZCore
import VZTestSupport
import XCTest
@testable import VZTarget

/// The files of two different disks never coincide, and every file is recognised as its disk's.
final class DiskFilesTests: XCTestCase {
    func testDerivedNamesAreTheDocumentedOnes() {
        let f = DiskFiles(disk: "disk0")
        XCTAssertEqual(f.descriptor, "disk0.vmdk")
        XCTAssertEqual(f.flat, "disk0-flat.vmdk")
        XCTAssertEqual(f.map, "disk0.vzmap")
        XCTAssertEqual(f.journal, "disk0.vzundo")
        XCTAssertEqual(f.cidRecord, "disk0.vzcid")
        XCTAssertEqual(f.lock, "disk0.vzlock")
        XCTAssertEqual(f.flatSeed, ".disk0-flat.vmdk.tmp")
        XCTAssertEqual(f.descriptorTemp, ".disk0.vmdk.tmp")
        XCTAssertEqual(f.mapTemp, ".disk0.vzmap.tmp")
        XCTAssertEqual(f.journalTemp, ".disk0.vzundo.tmp")
        XCTAssertEqual(f.scriptTemp, ".vzundo-script.tmp.disk0")
        XCTAssertEqual(Set(f.all).count, f.all.count)
    }

    func testTheOldCollisionIsRefused() {
        XCTAssertEqual(DiskFiles(disk: "data").flat, DiskFiles(disk: "data-flat").descriptor, "the collision this rule exists for")
        XCTAssertNotNil(NameRules.problem(withDisk: "data-flat"))
        XCTAssertNotNil(NameRules.problem(withDisk: "Data-FLAT"))
        for ok in ["data", "flat", "d-flatten", "web01_disk-2", "a.b", "s001", "x-s01"] {
            XCTAssertNil(NameRules.problem(withDisk: ok), ok)
        }
        for bad in ["x-delta", "x-sesparse", "x-ctk", "x-rdm", "x-rdmp", "x-s001", "x.vmdk", "x.vzmap", "x.tmp"] {
            XCTAssertNotNil(NameRules.problem(withDisk: bad), bad)
        }
    }

    /// Names built to collide: every derived name of a set of bases, with and without their
    /// extensions, taken as disk names themselves, plus random names. Among those the rules
    /// accept, no file name belongs to two disks, and `disk(owning:)` names its one owner.
    func testNoTwoValidDisksShareAFileName() {
        var candidates = Set(["d", "data", "a.b", "x-y", "vzundo-script", "vzundo", "tmp", "vmdk", "flat", "s001", "a."])
        var g = SplitMix64(seed: 42)
        let alphabet = Array("ab-_.0")
        for _ in 0..<300 {
            let n = Int(g.next() % 8) + 1
            candidates.insert("a" + String((0..<n).map { _ in alphabet[Int(g.next() % UInt64(alphabet.count))] }))
        }
        for base in Array(candidates) {
            for name in DiskFiles(disk: base).all {
                let body = name.hasPrefix(".") ? String(name.dropFirst()) : name
                candidates.insert(body)
                var stripped = body
                while let dot = stripped.lastIndex(of: ".") {
                    stripped = String(stripped[..<dot])
                    candidates.insert(stripped)
                }
                if let dash = body.lastIndex(of: "-") { candidates.insert(String(body[..<dash])) }
            }
        }
        let valid = candidates.filter { NameRules.problem(withDisk: $0) == nil }
        XCTAssertGreaterThan(valid.count, 200)
        var owner: [String: String] = [:]
        for disk in valid {
            for name in DiskFiles(disk: disk).all {
                if let other = owner[name] { XCTFail("\(name) belongs to both '\(other)' and '\(disk)'") }
                owner[name] = disk
                XCTAssertEqual(DiskFiles.disk(owning: name), disk, name)
            }
        }
        // Names that no valid disk derives are owned by none.
        for stranger in ["vzundo-script", "notes.txt", "x-flat-flat.vmdk", ".vzundo-script.tmp"] {
            XCTAssertNil(DiskFiles.disk(owning: stranger), stranger)
        }
    }
}
