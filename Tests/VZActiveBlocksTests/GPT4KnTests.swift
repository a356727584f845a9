import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// A 4Kn disk (4096-byte logical sectors): GPT header at byte 4096, written by a Python generator
/// with zlib's CRC-32 (no code shared with the mapper), one partition holding ext4.
final class GPT4KnTests: XCTestCase {
    static let generator = #"""
import struct, sys, zlib, uuid
img, sectors = sys.argv[1], int(sys.argv[2])
ss = 4096
linux = uuid.UUID("0FC63DAF-8483-4772-8E79-3D69D8477DE4").bytes_le
first, last = 256, sectors - 256
entry = linux + uuid.uuid4().bytes_le + struct.pack("<QQQ", first, last, 0) + "abm".encode("utf-16-le").ljust(72, b"\0")
array = entry + b"\0" * (128 * 128 - len(entry))
def header(my, alt, entries_lba):
    h = bytearray(struct.pack("<8sIIIIQQQQ16sQIII", b"EFI PART", 0x10000, 92, 0, 0, my, alt, 6, sectors - 6,
                              uuid.uuid4().bytes_le, entries_lba, 128, 128, zlib.crc32(array)))
    struct.pack_into("<I", h, 16, zlib.crc32(bytes(h)))
    return bytes(h)
f = open(img, "r+b")
pmbr = bytearray(512)
pmbr[0x1BE + 4] = 0xEE; struct.pack_into("<II", pmbr, 0x1BE + 8, 1, min(sectors - 1, 0xFFFFFFFF))
pmbr[510:512] = b"\x55\xaa"
f.seek(0); f.write(pmbr)
f.seek(ss); f.write(header(1, sectors - 1, 2))
f.seek(2 * ss); f.write(array)
f.seek((sectors - 5) * ss); f.write(array)
f.seek((sectors - 1) * ss); f.write(header(sectors - 1, 1, sectors - 5))
"""#

    func testFourKnGPTWithExt4() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("4kn.img")
        let sectors: UInt64 = 16384  // 64 MiB of 4 KiB sectors
        try sh("truncate -s \(sectors * 4096) \(img)")
        try Data(GPT4KnTests.generator.utf8).write(to: URL(fileURLWithPath: s.path("gen.py")))
        try sh("python3 \(s.path("gen.py")) \(img) \(sectors)")
        let p1: UInt64 = 256 * 4096, blocks = (sectors - 256 - 256 + 1)
        try sh("mke2fs -q -t ext4 -b 4096 -E offset=\(p1) -d \(s.path("src")) \(img) \(blocks)")
        try sh("debugfs -w -R 'rm /victim.bin' '\(img)?offset=\(p1)'")
        let disk = try FileDisk(img)
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["p1"], "\(map.volumes) \(map.warnings)")
        XCTAssertEqual(map.volumes.first?.filesystem, "ext4")
        XCTAssertEqual(map.volumes.first?.offset, p1)
        XCTAssertEqual(map.volumes.first?.size, blocks * 4096)
        let free = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(map.active)
        XCTAssertEqual(free, try dumpe2fsFree(img, offset: p1).free.shifted(by: p1))
        XCTAssertTrue(map.active.covers(Extent(offset: 0, length: 6 * 4096)), "PMBR, header and array")
        // The primary header damaged: the backup at the last 4 KiB sector gives the same map.
        disk.patches[4096 + 60] = 0xAA
        let viaBackup = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(viaBackup.active, map.active)
        XCTAssertTrue(viaBackup.warnings.contains { $0.contains("backup GPT header at LBA \(sectors - 1)") }, "\(viaBackup.warnings)")
    }
}
