import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// NTFS built with mkntfs + ntfscp, a file freed with ntfstruncate (its bytes stay behind), in an
/// MBR partition; checked against partclone.ntfs -D (which omits the backup-boot-sector tail).
final class NTFSTests: XCTestCase {
    static let start: UInt64 = 2048, sectors: UInt64 = 65536

    func makeDisk(_ s: Scratch, clusterSize: Int = 4096) throws -> (disk: String, part: String) {
        try s.populate()
        let part = s.path("ntfs.img"), disk = s.path("disk.img")
        try sh("truncate -s \(NTFSTests.sectors * 512) \(part) && mkntfs -q -F -f -s 512 -c \(clusterSize) -p \(NTFSTests.start) -H 255 -S 63 \(part) \(NTFSTests.sectors - 1)")
        for f in ["keep0.bin", "victim.bin", "keep1.bin"] { try sh("ntfscp -q \(part) \(s.path("src/" + f)) \(f)") }
        let inode = try sh("ntfsls -i \(part) | awk '$2 == \"victim.bin\" { print $1 }'").trimmingCharacters(in: .whitespacesAndNewlines)
        try sh("ntfstruncate \(part) \(inode) 0")
        try sh("truncate -s 48M \(disk) && printf 'label: dos\\nstart=\(NTFSTests.start), size=\(NTFSTests.sectors), type=7\\n' | sfdisk -q \(disk)")
        try sh("dd if=\(part) of=\(disk) bs=512 seek=\(NTFSTests.start) conv=notrunc status=none")
        return (disk, part)
    }

    func testNTFSMatchesPartcloneAndFreesTheTruncatedFile() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        for cluster in [4096, 512, 65536] {
            let (img, part) = try makeDisk(s, clusterSize: cluster)
            let disk = try FileDisk(img)
            let map = ActiveBlockMapper.map(disk, granularity: 512)
            XCTAssertEqual(map.volumes.map(\.filesystem), ["ntfs"], "\(cluster)")
            XCTAssertEqual(map.volumes.first?.allActive, false, "\(cluster): \(map.volumes)")
            let base = NTFSTests.start * 512
            let volume = ExtentSet([Extent(offset: base, length: NTFSTests.sectors * 512)])
            let free = volume.subtracting(map.active)
            let used = try partcloneUsed("partclone.ntfs", partition: part).shifted(by: base)
            let nclusters = try XCTUnwrap(UInt64(sh("ntfsinfo -m \(part) 2>/dev/null | awk '/Volume Size in Clusters/ { print $NF }'")
                .trimmingCharacters(in: .whitespacesAndNewlines)))
            let fsRange = ExtentSet([Extent(offset: base, length: nclusters * UInt64(cluster))])
            XCTAssertEqual(free, fsRange.subtracting(used), "cluster \(cluster): ABM = partclone + the tail")
            XCTAssertTrue(map.active.covers(Extent(offset: base + nclusters * UInt64(cluster), length: NTFSTests.sectors * 512 - nclusters * UInt64(cluster))),
                          "the tail with the backup boot sector is active")
            let victims = try victimChunks(img, unit: 512)
            XCTAssertGreaterThan(victims.count, 300, "ntfstruncate leaves the data behind")
            for v in victims { XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 512)])).isEmpty, "\(cluster): deleted data at \(v) is active") }
            try? FileManager.default.removeItem(atPath: img)
        }
    }

    func testTornRecordAndDirtyVolumeAreAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let (img, part) = try makeDisk(s)
        let disk = try FileDisk(img)
        XCTAssertFalse(ActiveBlockMapper.map(disk).volumes[0].allActive)
        // The last two bytes of the first sector of MFT record 6 no longer match the update sequence number.
        let mftLCN = UInt64(try sh("ntfsinfo -m \(part) 2>/dev/null | awk '/MFT Cluster/ { print $NF }'").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 4
        let rec6 = NTFSTests.start * 512 + mftLCN * 4096 + 6 * 1024
        disk.patches[rec6 + 510] = 0x12
        let torn = ActiveBlockMapper.map(disk)
        XCTAssertEqual(torn.activeBytes, disk.capacity)
        XCTAssertTrue(torn.volumes[0].reason?.contains("fixup mismatch") ?? false, "\(String(describing: torn.volumes[0].reason))")
        disk.patches = [:]
        try sh("ntfsresize -f -f -s 24000000 \(part) >/dev/null 2>&1 || true; dd if=\(part) of=\(img) bs=512 seek=\(NTFSTests.start) conv=notrunc status=none")
        let dirty = ActiveBlockMapper.map(try FileDisk(img))
        XCTAssertEqual(dirty.volumes[0].allActive, true)
        XCTAssertTrue(dirty.volumes[0].reason?.hasPrefix("dirty") ?? false, "\(String(describing: dirty.volumes[0].reason))")
    }

    /// A $LogFile whose restart area has clients in use and no clean flag (what a crash-consistent
    /// snapshot of a running Windows looks like) makes the volume all active; with the clean flag
    /// set it maps again.
    func testUncleanLogFileIsAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let (img, _) = try makeDisk(s)
        let disk = try FileDisk(img)
        let base = NTFSTests.start * 512
        let window = VolumeWindow(reader: MetadataReader(disk: disk), base: base, length: NTFSTests.sectors * 512)
        // Where $LogFile starts (record 2 sits right after records 0 and 1 on a fresh volume).
        let fs = try NTFSFilesystem(window, boot: try window.read(at: 0, count: 512))
        let rec2 = try fs.fixedRecord(try window.read(at: fs.mftLCN * fs.cluster + 2 * UInt64(fs.recordSize), count: fs.recordSize), number: 2)
        let logLCN = try XCTUnwrap(try fs.runs(of: try fs.unnamedData(rec2, number: 2)).first?.lcn)
        func restartPage(flags: UInt16) -> [UInt8] {
            var p = [UInt8](repeating: 0, count: 4096)
            p.replaceSubrange(0..<4, with: Array("RSTR".utf8))
            p[4] = 0x1E; p[6] = 9                 // update sequence array at 0x1E, 9 entries
            p[0x1E] = 0x01                         // usn 1
            for i in 1...8 { p[i * 512 - 2] = 0x01 }
            p[0x18] = 0x40                         // restart area at 0x40
            p[0x40 + 0x0C] = 0; p[0x40 + 0x0D] = 0 // client in-use list: client 0
            p[0x40 + 0x0E] = UInt8(flags & 0xFF); p[0x40 + 0x0F] = UInt8(flags >> 8)
            return p
        }
        let at = base + logLCN * fs.cluster
        for (i, b) in restartPage(flags: 0).enumerated() { disk.patches[at + UInt64(i)] = b }
        let unclean = ActiveBlockMapper.map(disk)
        XCTAssertEqual(unclean.activeBytes, disk.capacity)
        XCTAssertTrue(unclean.volumes[0].reason?.contains("$LogFile") ?? false, "\(String(describing: unclean.volumes[0].reason))")
        for (i, b) in restartPage(flags: 2).enumerated() { disk.patches[at + UInt64(i)] = b }
        XCTAssertFalse(ActiveBlockMapper.map(disk).volumes[0].allActive, "RESTART_VOLUME_IS_CLEAN")
    }

    /// hiberfil.sys (ntfscp'd into a root directory big enough to need INDX blocks) whose header
    /// is a hibernation signature: all active as hibernated; "wake" or a zeroed first page (resumed,
    /// or booted normally): mapped as usual. Oracle: ntfs-3g's own check, which makes the next
    /// ntfscp refuse the volume ("Windows is hibernated") for hibr and HIBR.
    func testHibernatedWindowsIsAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let (img, part) = try makeDisk(s)
        for i in 0..<60 { try sh("echo file \(i) > \(s.path("src/f\(i).txt")) && ntfscp -q \(part) \(s.path("src/f\(i).txt")) f\(i).txt") }
        XCTAssertTrue(try sh("ntfsinfo -i 5 \(part) 2>/dev/null").contains("$INDEX_ALLOCATION"), "the root index has INDX blocks")
        try sh("cp \(part) \(part).clean")
        for (header, hibernated) in [("hibr", true), ("HIBR", true), ("RSTR", true), ("wake", false), ("\\0\\0\\0\\0", false)] {
            try sh("printf '\(header)' > \(s.path("hiberfil.sys")) && head -c 65532 /dev/zero >> \(s.path("hiberfil.sys"))")
            try sh("cp \(part).clean \(part) && ntfscp -q \(part) \(s.path("hiberfil.sys")) hiberfil.sys && dd if=\(part) of=\(img) bs=512 seek=\(NTFSTests.start) conv=notrunc status=none")
            let map = ActiveBlockMapper.map(try FileDisk(img))
            XCTAssertEqual(map.volumes[0].allActive, hibernated, "\(header): \(map.volumes[0])")
            if hibernated {
                XCTAssertTrue(map.volumes[0].reason?.hasPrefix("hibernated:") ?? false, "\(String(describing: map.volumes[0].reason))")
                XCTAssertEqual(map.activeBytes, map.capacity)
            }
            let refused = try sh("ntfscp -q \(part) \(s.path("src/f0.txt")) again.txt 2>&1 || true").contains("hibernated")
            XCTAssertEqual(refused, header.lowercased() == "hibr", "ntfs-3g on \(header)")
        }
    }
}
