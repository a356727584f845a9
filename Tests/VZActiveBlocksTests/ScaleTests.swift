import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// Truncated filesystems and a 1 TiB disk: what mapping reads and how long it takes.
final class ScaleTests: XCTestCase {
    let tib: UInt64 = 1 << 40

    /// An ext4 image cut at every 64 KiB up to 2 MiB, and 4 KiB short of its end: the filesystem
    /// does not fit its volume, so the disk is all active, and nothing reads past the end.
    func testTruncatedExtImagesAreAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = s.path("fs.img")
        try sh("mke2fs -q -F -t ext4 -b 4096 -g 1024 -N 512 \(img) 6000")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: img)))
        for n in Array(stride(from: 0, through: 2 << 20, by: 65536)) + [bytes.count - 4096] {
            let d = MemoryDisk(size: n)
            d.bytes = Array(bytes[0..<n])
            let map = ActiveBlockMapper.map(d, granularity: 512)
            XCTAssertEqual(map.activeBytes, UInt64(n), "cut at \(n)")
        }
        let whole = MemoryDisk(size: bytes.count)
        whole.bytes = bytes
        XCTAssertLessThan(ActiveBlockMapper.map(whole).activeBytes, UInt64(bytes.count) / 2)
    }

    /// A 1 TiB sparse GPT disk with a 1 TiB ext4 partition: mapped from metadata only, in seconds
    /// (debug build), with a small set of extents. Prints the figures for `make bench`.
    func testOneTiBExt4MapsFromMetadataOnly() throws {
        let (map, seconds) = try mapOneTiB("ext4") { img, tib in
            let p1: UInt64 = 2048 * 512
            let blocks = (tib - p1 - (1 << 20)) / 4096
            try sh("truncate -s \(tib) \(img) && sgdisk -o -n 1:2048:0 -t 1:8300 \(img) >/dev/null")
            try sh("mke2fs -q -t ext4 -b 4096 -E offset=\(p1),lazy_itable_init=1,lazy_journal_init=1 \(img) \(blocks)")
        }
        XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes)")
        XCTAssertLessThan(seconds, 60)
        XCTAssertLessThan(map.metadataBytesRead, 64 << 20, "metadata only")
        XCTAssertLessThan(map.activeBytes, tib / 50)
    }

    /// A 1 TiB NTFS straight on the disk (mkntfs -f on a sparse file): mapped from $MFT and a
    /// 32 MiB $Bitmap.
    func testOneTiBNTFSMapsFromMetadataOnly() throws {
        let (map, seconds) = try mapOneTiB("NTFS") { img, tib in
            try sh("truncate -s \(tib) \(img) && mkntfs -q -F -f -s 512 -c 4096 -p 0 -H 255 -S 63 \(img) \(tib / 512 - 1)")
        }
        XCTAssertEqual(map.volumes.first?.filesystem, "ntfs")
        XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes)")
        XCTAssertLessThan(seconds, 120)
        XCTAssertLessThan(map.metadataBytesRead, 64 << 20, "metadata only")
        XCTAssertLessThan(map.activeBytes, tib / 50)
    }

    /// A 1 TiB XFS on a whole disk (4 AGs of 256 GiB; a 64 MiB log keeps mkfs's writes small):
    /// mapped from four AGFs, AGFLs and bnobt leaves plus the log's tail check.
    func testOneTiBXFSMapsFromMetadataOnly() throws {
        let (map, seconds) = try mapOneTiB("XFS") { img, tib in
            try sh("truncate -s \(tib) \(img) && mkfs.xfs -q -f -l size=64m \(img)")
        }
        XCTAssertEqual(map.volumes.first?.filesystem, "xfs")
        XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes)")
        XCTAssertLessThan(seconds, 30)
        XCTAssertLessThan(map.metadataBytesRead, 8 << 20, "metadata only")
        XCTAssertLessThan(map.activeBytes, tib / 1000)
    }

    /// Makes a sparse 1 TiB image with `make(path, size)`, maps it and prints the figures for
    /// `make bench`; returns the map and the seconds mapping took.
    func mapOneTiB(_ name: String, _ make: (String, UInt64) throws -> Void) throws -> (ActiveBlockMap, Double) {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = s.path("big.img")
        try make(img, tib)
        let disk = try FileDisk(img)
        let started = Date()
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        let seconds = Date().timeIntervalSince(started)
        print("ABM bench: 1 TiB \(name) mapped in \(String(format: "%.2f", seconds)) s, \(map.metadataBytesRead) metadata bytes read, \(map.activeBytes) bytes active, \(map.active.extents.count) extents")
        return (map, seconds)
    }
}
