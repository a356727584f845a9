import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// LVM2 on an MBR partition: the PV label, header and metadata area written by a small Python
/// generator (its own CRC via zlib, from the layouts in ACTIVE-BLOCKS.md §4.4, no code shared
/// with the mapper); a two-segment linear LV (PE 0-1 + PE 3) holding ext4 with a deleted file,
/// a thin LV (unsupported) on PE 6, and stale data in free PEs.
final class LVMTests: XCTestCase {
    static let partStart: UInt64 = 2048 * 512
    static let E: UInt64 = 4 << 20, P: UInt64 = 1 << 20

    static let generator = #"""
import struct, sys, zlib
img, part_off, part_len, extra = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def crc(b): return (~zlib.crc32(b, ~0xf597a6cf & 0xffffffff)) & 0xffffffff
uuid = b"AbCdEf0123456789AbCdEf0123456789"
dash = "AbCdEf-0123-4567-89Ab-CdEf-0123-456789"
text = ('''vg0 {
id = "vgid-0000"
seqno = 3
format = "lvm2" # a comment
status = ["RESIZEABLE", "READ", "WRITE"]
extent_size = 8192
physical_volumes {
pv0 {
id = "%s"
device = "/dev/sda1"
pe_start = 2048
pe_count = 15
}
}
logical_volumes {
root {
id = "lv-root"
segment_count = 2
segment2 {
start_extent = 2
extent_count = 1
type = "striped"
stripe_count = 1
stripes = [
"pv0", 3
]
}
segment1 {
start_extent = 0
extent_count = 2
type = "striped"
stripe_count = 1
stripes = ["pv0", 0]
}
}
pool {
id = "lv-pool"
segment_count = 1
segment1 {
start_extent = 0
extent_count = 1
type = "thin-pool"
stripes = ["pv0", 6]
}
}
%s
}
}
contents = "Text Format Volume Group"
version = 1
''' % (dash, extra)).encode() + b"\0"
f = open(img, "r+b")
label = bytearray(512)
label[0:8] = b"LABELONE"; struct.pack_into("<Q", label, 8, 1); struct.pack_into("<I", label, 20, 32); label[24:32] = b"LVM2 001"
pvh = uuid + struct.pack("<Q", part_len) + struct.pack("<QQ", 1 << 20, 0) + b"\0" * 16 + struct.pack("<QQ", 4096, (1 << 20) - 4096) + b"\0" * 16
label[32:32 + len(pvh)] = pvh
struct.pack_into("<I", label, 16, crc(bytes(label[20:512])))
f.seek(part_off + 512); f.write(label)
mda = bytearray(512)
mda[4:20] = b" LVM2 x[5A%r0N*>"; struct.pack_into("<IQQ", mda, 20, 1, 4096, (1 << 20) - 4096)
struct.pack_into("<QQII", mda, 40, 512, len(text), crc(text), 0)
struct.pack_into("<I", mda, 0, crc(bytes(mda[4:512])))
f.seek(part_off + 4096); f.write(mda)
f.seek(part_off + 4096 + 512); f.write(text)
"""#

    func makeDisk(_ s: Scratch, extraLV: String = "") throws -> String { try LVMTests.makeDisk(s, extraLV: extraLV) }

    static func makeDisk(_ s: Scratch, extraLV: String = "") throws -> String {
        try s.populate()
        let img = s.path("lvm.img"), lv = s.path("lv.img")
        try sh("truncate -s 80M \(img) && printf 'label: dos\\nstart=2048, size=131072, type=8e\\n' | sfdisk -q \(img)")
        try sh("truncate -s 12M \(lv) && mke2fs -q -F -t ext4 -b 4096 -g 1024 -N 256 -d \(s.path("src")) \(lv) && debugfs -w -R 'rm /victim.bin' \(lv)")
        // LV bytes [0, 8M) at PE 0-1, [8M, 12M) at PE 3.
        let pe = { (n: UInt64) in (LVMTests.partStart + LVMTests.P + n * LVMTests.E) / 512 }
        try sh("dd if=\(lv) of=\(img) bs=512 seek=\(pe(0)) count=16384 conv=notrunc status=none && dd if=\(lv) of=\(img) bs=512 skip=16384 seek=\(pe(3)) count=8192 conv=notrunc status=none")
        // Stale data in free PEs 2 and 5, and inside the thin pool's PE 6.
        for n: UInt64 in [2, 5, 6] {
            try sh("head -c 1048576 \(s.path("src/victim.bin")) | dd of=\(img) bs=512 seek=\(pe(n)) conv=notrunc status=none")
        }
        try Data(LVMTests.generator.utf8).write(to: URL(fileURLWithPath: s.path("gen.py")))
        try sh("python3 \(s.path("gen.py")) \(img) \(LVMTests.partStart) \(131072 * 512) '\(extraLV)'")
        return img
    }

    func testLinearLVIsMappedThroughItsSegmentsAndFreePEsAreFree() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = try makeDisk(s)
        let disk = try FileDisk(img)
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["p1", "vg0/root", "vg0/pool"], "\(map.volumes) \(map.warnings)")
        XCTAssertEqual(map.volumes.map(\.filesystem), ["lvm2", "ext4", "unknown"])
        XCTAssertEqual(map.volumes.map(\.allActive), [false, false, true])
        XCTAssertEqual(map.volumes[1].kind, .logicalVolume)
        // Expected free bytes: dumpe2fs's free blocks of the LV mapped through the segments, plus
        // the PEs no LV uses (2, 4, 5, 7...14).
        let lvFree = try dumpe2fsFree(s.path("lv.img"), offset: 0).free
        let base = LVMTests.partStart + LVMTests.P
        var expected = ExtentSet()
        for e in lvFree {
            for (lo, pe) in [(UInt64(0), UInt64(0)), (4 << 20, 1), (8 << 20, 3)] {
                if let x = e.intersection(Extent(offset: lo, length: LVMTests.E)) {
                    expected.insert(Extent(offset: base + pe * LVMTests.E + x.offset - lo, length: x.length))
                }
            }
        }
        for pe: UInt64 in [2, 4, 5] + Array(7...14) { expected.insert(Extent(offset: base + pe * LVMTests.E, length: LVMTests.E)) }
        let partition = ExtentSet([Extent(offset: LVMTests.partStart, length: 131072 * 512)])
        XCTAssertEqual(partition.subtracting(map.active), expected)
        XCTAssertTrue(map.active.covers(Extent(offset: LVMTests.partStart, length: LVMTests.P)), "label and metadata area")
        XCTAssertTrue(map.active.covers(Extent(offset: base + 6 * LVMTests.E, length: LVMTests.E)), "the thin pool's PE")
        XCTAssertTrue(map.active.covers(Extent(offset: base + 15 * LVMTests.E, length: 131072 * 512 - LVMTests.P - 15 * LVMTests.E)), "PV tail")
        // Deleted data is inactive except inside the thin pool (which is all active, correctly).
        let pool = Extent(offset: base + 6 * LVMTests.E, length: LVMTests.E)
        for v in try victimChunks(img, unit: 512) where pool.intersection(Extent(offset: v, length: 512)) == nil {
            XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 512)])).isEmpty, "deleted data at \(v) is active")
        }
    }

    func testCorruptLVMMetadataIsAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = try makeDisk(s)
        let disk = try FileDisk(img)
        for (offset, what) in [(LVMTests.partStart + 512 + 40, "label CRC"), (LVMTests.partStart + 4096 + 50, "mda header CRC"),
                               (LVMTests.partStart + 4096 + 512 + 30, "metadata text CRC")] {
            disk.patches = [offset: 0x5A]
            let map = ActiveBlockMapper.map(disk, granularity: 512)
            XCTAssertEqual(map.activeBytes, disk.capacity, what)
            XCTAssertTrue(map.volumes[0].reason?.contains("CRC") ?? false, "\(what): \(String(describing: map.volumes[0].reason))")
        }
    }

    /// A PV on the whole disk (no partition table, as data disks often are), with an ext4 LV.
    func testWholeDiskPV() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("pv.img"), lv = s.path("lv.img")
        try sh("truncate -s 64M \(img) && truncate -s 12M \(lv) && mke2fs -q -F -t ext4 -b 4096 -N 256 -d \(s.path("src")) \(lv) && debugfs -w -R 'rm /victim.bin' \(lv)")
        let pe = { (n: UInt64) in (LVMTests.P + n * LVMTests.E) / 512 }
        try sh("dd if=\(lv) of=\(img) bs=512 seek=\(pe(0)) count=16384 conv=notrunc status=none && dd if=\(lv) of=\(img) bs=512 skip=16384 seek=\(pe(3)) count=8192 conv=notrunc status=none")
        try Data(LVMTests.generator.utf8).write(to: URL(fileURLWithPath: s.path("gen.py")))
        try sh("python3 \(s.path("gen.py")) \(img) 0 \(64 << 20) ''")
        let map = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["disk", "vg0/root", "vg0/pool"])
        XCTAssertEqual(map.volumes.map(\.filesystem), ["lvm2", "ext4", "unknown"])
        let lvFree = try dumpe2fsFree(lv, offset: 0).free
        XCTAssertEqual(map.volumes[1].activeBytes, 12 << 20 - lvFree.totalLength)
        for v in try victimChunks(img, unit: 512) {
            XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 512)])).isEmpty, "deleted data at \(v) is active")
        }
    }
}
