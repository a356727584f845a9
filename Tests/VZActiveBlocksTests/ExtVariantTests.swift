import Foundation
import VZCore
import VZTestSupport
import XCTest
@testable import VZActiveBlocks

/// ext2/3/4 layouts straight on the whole disk (no partition table), each mapped and compared
/// with dumpe2fs's free blocks and partclone.extfs's used blocks; the disk is larger than the
/// filesystem, and the tail must stay active.
final class ExtVariantTests: XCTestCase {
    static let variants: [(String, String, Int)] = [
        // (name, mke2fs options, filesystem size in blocks: not a multiple of the group size, so the last group is partial)
        ("ext4 32-byte descriptors, uninit_bg (crc16)", "-t ext4 -O ^64bit,^metadata_csum,uninit_bg -b 4096 -g 1024 -N 512", 6000),
        ("ext4 meta_bg + flex_bg", "-t ext4 -O meta_bg,^resize_inode -b 4096 -g 1024 -N 512", 6000),
        ("ext4 meta_bg, no flex_bg, 1 KiB", "-t ext4 -O meta_bg,^resize_inode,^flex_bg -b 1024 -g 1024 -N 256", 23000),
        ("ext4 no flex_bg", "-t ext4 -O ^flex_bg -b 4096 -g 1024 -N 512", 6000),
        ("ext4 sparse_super2", "-t ext4 -O sparse_super2 -b 4096 -g 1024 -N 512", 6000),
        ("ext4 1 KiB blocks, metadata_csum, csum_seed", "-t ext4 -O metadata_csum_seed -b 1024 -g 2048 -N 256", 23000),
        ("ext2 2 KiB blocks", "-t ext2 -b 2048 -g 2048 -N 256", 11000),
        ("ext3", "-t ext3 -b 4096 -g 1024 -N 512", 6000),
    ]

    func testVariantsMatchDumpe2fsAndPartclone() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        for (name, options, blocks) in ExtVariantTests.variants {
            let img = s.path("fs.img")
            try? FileManager.default.removeItem(atPath: img)
            try sh("truncate -s 32M \(img) && mke2fs -q -F \(options) -d \(s.path("src")) \(img) \(blocks)")
            try sh("debugfs -w -R 'rm /victim.bin' \(img)")
            let disk = try FileDisk(img)
            let map = ActiveBlockMapper.map(disk, granularity: 1024)
            XCTAssertEqual(map.volumes.count, 1, name)
            XCTAssertEqual(map.volumes.first?.kind, .disk, name)
            XCTAssertEqual(map.volumes.first?.allActive, false, "\(name): \(map.volumes)")
            let free = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(map.active)
            let oracle = try dumpe2fsFree(img, offset: 0)
            XCTAssertEqual(free, oracle.free, name)
            XCTAssertEqual(free.totalLength, oracle.free.totalLength, name)
            let fsEnd = UInt64(blocks) * oracle.blockSize
            XCTAssertTrue(map.active.covers(Extent(offset: fsEnd, length: disk.capacity - fsEnd)), "\(name): the tail after the filesystem is active")
            try sh("truncate -s \(fsEnd) \(s.path("part.img")) && dd if=\(img) of=\(s.path("part.img")) bs=1M count=32 conv=notrunc status=none 2>/dev/null; truncate -s \(fsEnd) \(s.path("part.img"))")
            let used = try partcloneUsed("partclone.extfs", partition: s.path("part.img"))
            XCTAssertEqual(free, ExtentSet([Extent(offset: 0, length: fsEnd)]).subtracting(used), "\(name) vs partclone")
            for v in try victimChunks(img, unit: 1024) {
                XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 1024)])).isEmpty, "\(name): deleted data at \(v) is active")
            }
        }
    }

    func testDirtyExtIsAllActiveWithReason() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("fs.img")
        for (command, reason) in [("feature needs_recovery", "dirty: needs_recovery"), ("ssv state 0", "dirty: not cleanly"),
                                  ("ssv state 3", "dirty: errors")] {
            try? FileManager.default.removeItem(atPath: img)
            try sh("truncate -s 32M \(img) && mke2fs -q -F -t ext4 -b 4096 -g 1024 -N 512 -d \(s.path("src")) \(img) 6000")
            try sh("debugfs -w -R '\(command)' \(img)")
            let map = ActiveBlockMapper.map(try FileDisk(img))
            XCTAssertEqual(map.activeBytes, map.capacity, command)
            XCTAssertEqual(map.volumes.first?.allActive, true, command)
            XCTAssertTrue(map.volumes.first?.reason?.hasPrefix(reason) ?? false, "\(command): \(String(describing: map.volumes.first?.reason))")
            XCTAssertTrue(map.warnings.contains { $0.contains("dirty") }, command)
        }
    }

    /// Corrupt descriptors and superblocks: the group (or the volume) becomes active, never less
    /// than what dumpe2fs of the intact filesystem calls used, and nothing crashes.
    func testCorruptionFallsBackToActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("fs.img")
        try sh("truncate -s 32M \(img) && mke2fs -q -F -t ext4 -b 4096 -g 1024 -N 512 -d \(s.path("src")) \(img) 6000")
        let disk = try FileDisk(img)
        let good = ActiveBlockMapper.map(disk, granularity: 4096)
        // A descriptor byte of group 3 (descriptor table at block 1, 64-byte descriptors): that group stays active.
        disk.patches[4096 + 3 * 64 + 0x0C] = 0x99
        let oneGroup = ActiveBlockMapper.map(disk, granularity: 4096)
        XCTAssertTrue(oneGroup.active.covers(Extent(offset: 3 * 1024 * 4096, length: 1024 * 4096)))
        XCTAssertEqual(oneGroup.active.subtracting(ExtentSet([Extent(offset: 3 * 1024 * 4096, length: 1024 * 4096)])),
                       good.active.subtracting(ExtentSet([Extent(offset: 3 * 1024 * 4096, length: 1024 * 4096)])))
        XCTAssertTrue(oneGroup.warnings.contains { $0.contains("checksum") }, "\(oneGroup.warnings)")
        // A superblock byte (free blocks count): metadata_csum catches it, the volume is all active.
        disk.patches = [1024 + 0x0C: 0x42]
        let sbBad = ActiveBlockMapper.map(disk, granularity: 4096)
        XCTAssertEqual(sbBad.activeBytes, disk.capacity)
        XCTAssertEqual(sbBad.volumes.first?.reason, "corrupt: superblock checksum mismatch")
        // A bitmap byte of group 0: its bitmap checksum fails, the group stays active.
        let bitmapBlock = try UInt64(XCTUnwrap(sh("dumpe2fs \(img) 2>/dev/null | grep -m1 'Block bitmap at'")
            .split(separator: " ").dropFirst(3).first.flatMap { UInt64($0) }))
        disk.patches = [:]
        var original = [UInt8](repeating: 0, count: 1)
        try original.withUnsafeMutableBytes { try disk.read(at: bitmapBlock * 4096 + 100, into: $0) }
        disk.patches = [bitmapBlock * 4096 + 100: original[0] ^ 0x10]
        let bitmapBad = ActiveBlockMapper.map(disk, granularity: 4096)
        XCTAssertTrue(bitmapBad.active.covers(Extent(offset: 0, length: 1024 * 4096)))
        // Random damage to the first 64 KiB (superblock, descriptors, bitmaps): never a crash,
        // and with metadata_csum never a block freed that the intact filesystem uses.
        let used = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(good.active)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<300 {
            disk.patches = [:]
            for _ in 0..<Int(rng.next() % 4 + 1) { disk.patches[1024 + rng.next() % 65536] = UInt8(truncatingIfNeeded: rng.next()) }
            let m = ActiveBlockMapper.map(disk, granularity: 4096)
            let freed = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(m.active)
            XCTAssertTrue(freed.subtracting(used).isEmpty || freed.subtracting(used).totalLength == 0,
                          "damage \(disk.patches) freed bytes the intact filesystem uses")
        }
    }
}
