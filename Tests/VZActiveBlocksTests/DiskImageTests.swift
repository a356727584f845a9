import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// Whole disks built with the real tools (sgdisk, sfdisk, mke2fs -d, mkfs.fat + mtools, mkswap),
/// checked against oracles that share no code with the mapper: dumpe2fs, partclone.extfs -D,
/// mdir's free-space count, and the bytes of deleted files left behind in the image.
final class DiskImageTests: XCTestCase {
    static let mib: UInt64 = 1 << 20

    /// GPT: p1 ext4 (flex_bg, metadata_csum, 6 groups, some BLOCK_UNINIT), p2 FAT16, p3 swap.
    struct GPTDisk {
        let image: String
        let p1: UInt64, p2: UInt64, p3: UInt64
        static let p1Sectors: UInt64 = 49152, p2Sectors: UInt64 = 32768, p3Sectors: UInt64 = 16384
    }

    static func makeGPTDisk(_ s: Scratch) throws -> GPTDisk {
        try s.populate()
        let img = s.path("gpt.img")
        try sh("truncate -s 64M \(img) && sgdisk -o -n 1:2048:+24M -t 1:8300 -n 2:0:+16M -t 2:0700 -n 3:0:+8M -t 3:8200 \(img)")
        let p1: UInt64 = 2048 * 512, p2: UInt64 = 51200 * 512, p3: UInt64 = 83968 * 512
        try sh("mke2fs -q -t ext4 -b 4096 -g 1024 -N 512 -E offset=\(p1) -d \(s.path("src")) \(img) 6144")
        try sh("debugfs -w -R 'rm /victim.bin' '\(img)?offset=\(p1)'")
        try sh("mkfs.fat -F 16 -s 2 -S 512 -h 51200 --offset 51200 \(img) 16384")
        for f in ["keep0.bin", "keep1.bin", "victim.bin", "keep2.bin"] {
            try sh("mcopy -i \(img)@@\(p2) \(s.path("src/" + f)) ::\(f)")
        }
        try sh("mdel -i \(img)@@\(p2) ::victim.bin")
        try sh("truncate -s 8M \(s.path("swap")) && mkswap -L abmswap \(s.path("swap")) && dd if=\(s.path("swap")) of=\(img) bs=512 seek=83968 conv=notrunc status=none")
        return GPTDisk(image: img, p1: p1, p2: p2, p3: p3)
    }

    func testGPTDiskMatchesDumpe2fsPartcloneAndMdir() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let d = try DiskImageTests.makeGPTDisk(s)
        let disk = try FileDisk(d.image)
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["p1", "p2", "p3"])
        XCTAssertEqual(map.volumes.map(\.filesystem), ["ext4", "fat16", "swap"])
        XCTAssertEqual(map.volumes.map(\.allActive), [false, false, false], "\(map.volumes)")
        XCTAssertEqual(map.volumes[0].partitionType, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")
        let free = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(map.active)

        // ext4: exactly the free blocks dumpe2fs lists (it synthesises BLOCK_UNINIT groups itself).
        let p1Range = ExtentSet([Extent(offset: d.p1, length: GPTDisk.p1Sectors * 512)])
        let oracle = try dumpe2fsFree(d.image, offset: d.p1)
        XCTAssertFalse(oracle.free.isEmpty)
        XCTAssertEqual(free.intersection(p1Range), oracle.free.shifted(by: d.p1))
        // ... and the complement of what partclone.extfs says is used.
        try sh("dd if=\(d.image) of=\(s.path("p1.img")) bs=512 skip=2048 count=\(GPTDisk.p1Sectors) status=none")
        let used = try partcloneUsed("partclone.extfs", partition: s.path("p1.img"))
        XCTAssertEqual(free.intersection(p1Range).shifted(by: 0), p1Range.subtracting(used.shifted(by: d.p1)))

        // FAT16: as many free bytes as mdir counts, all in the data area.
        let p2Range = ExtentSet([Extent(offset: d.p2, length: GPTDisk.p2Sectors * 512)])
        let mdir = try sh("mdir -i \(d.image)@@\(d.p2) ::")
        let freeLine = mdir.split(separator: "\n").first { $0.contains("bytes free") }!
        let mdirFree = UInt64(freeLine.filter(\.isNumber))!
        // mkfs.fat was told 16384 KiB: the partition's remaining bytes past the filesystem stay active.
        XCTAssertEqual(free.intersection(p2Range).totalLength, mdirFree)

        // swap: only the header page is active.
        XCTAssertEqual(map.volumes[2].activeBytes, 4096)

        // The partition table areas stay active: PMBR + header + array, backup array + header.
        XCTAssertTrue(map.active.covers(Extent(offset: 0, length: 2048 * 512)))
        XCTAssertTrue(map.active.covers(Extent(offset: disk.capacity - 33 * 512, length: 33 * 512)))
        // Every sector still holding deleted-file bytes is inactive.
        let victims = try victimChunks(d.image, unit: 512)
        XCTAssertGreaterThan(victims.count, 300, "the fixture leaves the deleted files' bytes behind")
        for v in victims { XCTAssertFalse(map.active.intersection(ExtentSet([Extent(offset: v, length: 512)])).totalLength > 0, "sector at \(v) holds deleted data but is active") }
        XCTAssertGreaterThan(map.metadataBytesRead, 0)
        XCTAssertLessThan(map.metadataBytesRead, 1 << 20, "mapping reads metadata only")
    }

    func testPrimaryGPTCorruptUsesBackupAndBothCorruptIsAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let d = try DiskImageTests.makeGPTDisk(s)
        let disk = try FileDisk(d.image)
        let good = ActiveBlockMapper.map(disk, granularity: 512)
        disk.patches[512 + 40] = 0x7F  // FirstUsableLBA: the header CRC no longer matches
        let viaBackup = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(viaBackup.active, good.active)
        XCTAssertTrue(viaBackup.warnings.contains { $0.contains("backup GPT header") }, "\(viaBackup.warnings)")
        disk.patches[disk.capacity - 512 + 88] = 0x13
        let neither = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(neither.activeBytes, disk.capacity)
        XCTAssertEqual(neither.volumes.first?.allActive, true)
        XCTAssertTrue(neither.volumes.first?.reason?.hasPrefix("corrupt") ?? false)
        // A corrupt entry array in the primary: the backup's copy is used.
        disk.patches = [2 * 512 + 32: 0x55]
        XCTAssertEqual(ActiveBlockMapper.map(disk, granularity: 512).active, good.active)
    }

    /// MBR with an extended partition: p1 ext3 with 1 KiB blocks (block 0 holds boot code),
    /// logical p5 swap and p6 type 8e with nothing recognisable in it.
    func testMBRLogicalsExt3OneKiBBlocks() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("mbr.img")
        try sh("truncate -s 64M \(img) && printf 'label: dos\\nstart=2048, size=40960, type=83, bootable\\nstart=43008, size=73728, type=5\\nstart=45056, size=16384, type=82\\nstart=63488, size=40960, type=8e\\n' | sfdisk -q \(img)")
        let p1: UInt64 = 2048 * 512
        try sh("mke2fs -q -t ext3 -b 1024 -d \(s.path("src")) -E offset=\(p1) \(img) 20480")
        try sh("printf FAKEBOOTLOADER | dd of=\(img) bs=1 seek=\(p1) conv=notrunc status=none")
        try sh("debugfs -w -R 'rm /victim.bin' '\(img)?offset=\(p1)'")
        try sh("truncate -s 8M \(s.path("swap")) && mkswap \(s.path("swap")) && dd if=\(s.path("swap")) of=\(img) bs=512 seek=45056 conv=notrunc status=none")
        let disk = try FileDisk(img)
        let map = ActiveBlockMapper.map(disk, granularity: 1024)
        XCTAssertEqual(map.volumes.map(\.name), ["p1", "p5", "p6"])
        XCTAssertEqual(map.volumes.map(\.filesystem), ["ext3", "swap", "unknown"])
        XCTAssertEqual(map.volumes.map(\.partitionType), ["0x83", "0x82", "0x8E"])
        XCTAssertEqual(map.volumes[2].allActive, true)
        XCTAssertEqual(map.volumes[1].offset, 45056 * 512)
        let free = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(map.active)
        let p1Range = ExtentSet([Extent(offset: p1, length: 40960 * 512)])
        let oracle = try dumpe2fsFree(img, offset: p1)
        XCTAssertEqual(oracle.blockSize, 1024)
        XCTAssertEqual(free.intersection(p1Range), oracle.free.shifted(by: p1))
        XCTAssertTrue(map.active.covers(Extent(offset: p1, length: 1024)), "block 0 (boot block) is outside every group")
        // EBRs and the gaps after them are active.
        for ebr: UInt64 in [43008, 61440] { XCTAssertTrue(map.active.covers(Extent(offset: ebr * 512, length: 2048 * 512))) }
        XCTAssertEqual(map.volumes[1].activeBytes, 4096)
        for v in try victimChunks(img, unit: 1024) {
            XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 1024)])).isEmpty, "deleted data at \(v) is active")
        }
    }
}
