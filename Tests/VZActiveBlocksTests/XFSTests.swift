import Foundation
import VZCore
import VZTestSupport
import XCTest
@testable import VZActiveBlocks

/// XFS built by mkfs.xfs from a protofile (no mount). Files are "deleted" the only way an
/// unmounted XFS allows: xfs_db -x empties the victims' inodes (nextents 0, size 0), and
/// xfs_repair rebuilds the free-space trees around the blocks no inode owns any more; the victims'
/// bytes stay behind. Oracles: `xfs_db -r -c 'freesp -d'` (every free extent, AGFL included),
/// `partclone.xfs -D`, `xfs_logprint -t`.
final class XFSTests: XCTestCase {
    /// Builds `name` (size e.g. "64M") with keepers and victims interleaved, so every victim
    /// leaves a hole between two kept files; returns the image path.
    static func makeXFS(_ s: Scratch, _ name: String, size: String, options: String = "", pairs: Int = 3,
                        fileSize: Int = 60_000) throws -> String {
        let img = s.path(name), dir = s.path(name + ".src")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var proto = "/dummy\n0 0\nd--755 0 0\n"
        var rng = SplitMix64(seed: UInt64(pairs))
        for i in 0..<pairs {
            var keep = [UInt8](repeating: 0, count: fileSize)
            for k in 0..<fileSize { keep[k] = UInt8(truncatingIfNeeded: rng.next()) }
            try Data(keep).write(to: URL(fileURLWithPath: "\(dir)/keep\(i)"))
            try Data(victimData(fileSize)).write(to: URL(fileURLWithPath: "\(dir)/victim\(i)"))
            proto += "keep\(i) ---644 0 0 \(dir)/keep\(i)\nvictim\(i) ---644 0 0 \(dir)/victim\(i)\n"
        }
        proto += "$\n"
        try proto.write(toFile: img + ".proto", atomically: true, encoding: .utf8)
        try sh("truncate -s \(size) \(img) && TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f \(options) -p \(img).proto \(img)")
        let zap = try sh("xfs_db -r -c 'ls /' \(img) | awk '$NF == \"(good)\" && $(NF-1) ~ /^victim/ { printf \" -c \\\"inode %s\\\" -c \\\"write core.nextents 0\\\" -c \\\"write core.size 0\\\"\", $2 }'")
        try sh("xfs_db -x \(zap) \(img) >/dev/null && xfs_repair \(img) >/dev/null 2>&1 && xfs_repair -n \(img) >/dev/null 2>&1")
        return img
    }

    static func geometry(_ img: String) throws -> (agBlocks: UInt64, blockSize: UInt64, dblocks: UInt64) {
        let text = try sh("xfs_db -r -c 'sb 0' -c 'p agblocks blocksize dblocks' \(img)")
        func value(_ key: String) -> UInt64 {
            UInt64(text.split(separator: "\n").first { $0.hasPrefix(key + " = ") }!.split(separator: " ").last!)!
        }
        return (value("agblocks"), value("blocksize"), value("dblocks"))
    }

    /// Every free extent `xfs_db freesp -d` lists (bnobt and AGFL), in bytes from the filesystem start.
    static func freesp(_ img: String) throws -> ExtentSet {
        let g = try geometry(img)
        var free = ExtentSet()
        for line in try sh("xfs_db -r -c 'freesp -d' \(img)").split(separator: "\n") {
            let f = line.split(separator: " ").compactMap { UInt64($0) }
            guard f.count == 3, line.split(separator: " ").count == 3 else { continue }
            free.insert(Extent(offset: (f[0] * g.agBlocks + f[1]) * g.blockSize, length: f[2] * g.blockSize))
        }
        return free
    }

    /// A v5 XFS in a GPT partition 6 MiB longer than the filesystem: ABM frees exactly what
    /// freesp lists, agrees with partclone, keeps the tail active, and drops every victim byte.
    func testXFSMatchesFreespAndPartclone() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let fs = try XFSTests.makeXFS(s, "xfs.img", size: "64M")
        let img = s.path("disk.img"), base: UInt64 = 2048 * 512, part: UInt64 = 70 << 20
        try sh("truncate -s 80M \(img) && sgdisk -o -n 1:2048:+70M -t 1:8300 \(img) >/dev/null && dd if=\(fs) of=\(img) bs=1M seek=1 conv=notrunc status=none")
        let map = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
        XCTAssertEqual(map.volumes.map(\.filesystem), ["xfs"])
        XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes) \(map.warnings)")
        let free = ExtentSet([Extent(offset: base, length: part)]).subtracting(map.active)
        XCTAssertEqual(free, try XFSTests.freesp(fs).shifted(by: base), "ABM = xfs_db freesp")
        let used = try partcloneUsed("partclone.xfs", partition: fs).shifted(by: base)
        XCTAssertEqual(free, ExtentSet([Extent(offset: base, length: 64 << 20)]).subtracting(used), "ABM = partclone")
        XCTAssertTrue(map.active.covers(Extent(offset: base + (64 << 20), length: 6 << 20)), "the partition's tail")
        let victims = try victimChunks(img, unit: 4096)
        XCTAssertGreaterThan(victims.count, 30, "the victims' bytes are still on the disk")
        for v in victims { XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 4096)])).isEmpty, "deleted data at \(v) is active") }
        XCTAssertLessThan(map.metadataBytesRead, 4 << 20)
    }

    /// 1 KiB blocks, 300 interleaved one-block victims: the bnobt of AG 0 has two levels (checked
    /// with xfs_db); three AGs, the last one short; the image on a whole disk (no partition table).
    func testMultiLevelBnobtAndShortLastAG() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = try XFSTests.makeXFS(s, "frag.img", size: "50M", options: "-b size=1024 -d agcount=3", pairs: 300, fileSize: 1000)
        let levels = try sh("xfs_db -r -c 'agf 0' -c 'p bnolevel' \(img)")
        XCTAssertTrue(levels.contains("bnolevel = 2") || levels.contains("bnolevel = 3"), levels)
        let g = try XFSTests.geometry(img)
        XCTAssertNotEqual(g.dblocks % g.agBlocks, 0, "the last AG is short")
        let map = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["disk"])
        XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes) \(map.warnings)")
        let expected = try XFSTests.freesp(img)
        XCTAssertGreaterThan(expected.extents.count, 250)
        XCTAssertEqual(ExtentSet([Extent(offset: 0, length: map.capacity)]).subtracting(map.active), expected)
        for v in try victimChunks(img, unit: 1024) { XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 1024)])).isEmpty, "deleted data at \(v) is active") }
    }

    /// A v4 filesystem (no CRCs, ABTB blocks, an AGFL without header).
    func testV4() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = try XFSTests.makeXFS(s, "v4.img", size: "40M", options: "-m crc=0 -b size=1024", pairs: 80, fileSize: 1000)
        let map = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
        XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes) \(map.warnings)")
        XCTAssertEqual(ExtentSet([Extent(offset: 0, length: map.capacity)]).subtracting(map.active), try XFSTests.freesp(img))
    }

    /// 4 KiB sectors (AGF, AGI and AGFL a sector each, a 4 KiB log sector), 64 KiB blocks, and
    /// the reverse-mapping btree (its blocks come from the AGFL too).
    func testSectorAndBlockSizes() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        for (i, (options, size)) in [("-s size=4096", "96M"), ("-b size=65536", "256M"), ("-m rmapbt=1 -b size=1024", "96M"),
                                     ("-l sunit=64", "96M")].enumerated() {
            let img = try XFSTests.makeXFS(s, "v\(i).img", size: size, options: options, pairs: 20, fileSize: 70_000)
            let map = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
            XCTAssertEqual(map.volumes.first?.allActive, false, "\(options): \(map.volumes) \(map.warnings)")
            XCTAssertEqual(ExtentSet([Extent(offset: 0, length: map.capacity)]).subtracting(map.active), try XFSTests.freesp(img), options)
            try FileManager.default.removeItem(atPath: img)
        }
    }

    /// What ABM does not map: an external log (its state is on another disk), a realtime
    /// device, a filesystem marked NEEDSREPAIR (xfs_db sets the bit, the CRC stays right).
    func testPolicyReasons() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let env = "TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1"
        let ext = s.path("ext.img"), rt = s.path("rt.img"), nr = s.path("nr.img")
        try sh("truncate -s 64M \(ext) \(rt) \(nr) && truncate -s 16M \(s.path("log.img")) \(s.path("rtdev.img"))")
        try sh("\(env) mkfs.xfs -q -f -l logdev=\(s.path("log.img")),size=8m \(ext) && \(env) mkfs.xfs -q -f -r rtdev=\(s.path("rtdev.img")) \(rt)")
        try sh("\(env) mkfs.xfs -q -f \(nr) && xfs_db -x -c 'sb 0' -c 'write features_incompat 0x1b' \(nr) >/dev/null")
        for (img, reason) in [(ext, "unsupported: XFS with an external log"), (rt, "unsupported: XFS with a realtime device"),
                              (nr, "dirty: XFS needs repair")] {
            let v = ActiveBlockMapper.map(try FileDisk(img)).volumes[0]
            XCTAssertEqual(v.filesystem, "xfs")
            XCTAssertTrue(v.allActive)
            XCTAssertTrue(v.reason?.hasPrefix(reason) ?? false, "\(String(describing: v.reason))")
        }
    }

    /// The log decides: an unmount record at the head is clean (also after `logformat -c 5`, which
    /// leaves an older cycle behind the head); without its unmount flag, or with a newer write
    /// after it, the volume is all active as dirty, as `xfs_logprint -t` says.
    func testLogStates() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = try XFSTests.makeXFS(s, "log.img", size: "64M")
        let logDaddr = try XCTUnwrap(UInt64(try sh("xfs_logprint -t \(img) 2>&1 | awk '/daddr:/ { print $5 }'").trimmingCharacters(in: .whitespacesAndNewlines)))
        let logBytes = logDaddr * 512
        func state(_ disk: FileDisk) -> Volume { ActiveBlockMapper.map(disk, granularity: 512).volumes[0] }
        XCTAssertTrue(try sh("xfs_logprint -t \(img) 2>&1").contains("<CLEAN>"))
        let disk = try FileDisk(img)
        XCTAssertFalse(state(disk).allActive)
        // The unmount record's operation flags (data block after its header, byte 9).
        let record = try XCTUnwrap(try sh("xfs_logprint -t \(img) 2>&1 | awk '/head:/ { print $5 }'").trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").first.flatMap { UInt64($0) })
        XCTAssertGreaterThanOrEqual(record, 2)
        disk.patches = [logBytes + (record - 1) * 512 + 9: 0]
        let dirty = state(disk)
        XCTAssertTrue(dirty.allActive)
        XCTAssertTrue(dirty.reason?.hasPrefix("dirty:") ?? false, "\(String(describing: dirty.reason))")
        try sh("cp \(img) \(img).d && printf '\\x00' | dd of=\(img).d bs=1 seek=\(logBytes + (record - 1) * 512 + 9) conv=notrunc status=none")
        XCTAssertTrue(try sh("xfs_logprint -t \(img).d 2>&1").contains("<DIRTY>"), "the oracle agrees")
        // A block of the current cycle 50 blocks past the head: a log buffer written after the
        // unmount record whose predecessor had not reached the disk.
        disk.patches = [:]
        let c0 = try sh("dd if=\(img) bs=1 skip=\(logBytes + 4) count=4 status=none | od -An -tx1").split(separator: " ").compactMap { UInt8($0.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) }
        XCTAssertEqual(c0.count, 4)
        for (i, b) in c0.enumerated() { disk.patches[logBytes + (record + 50) * 512 + UInt64(i)] = b }
        XCTAssertTrue(state(disk).reason?.hasPrefix("dirty:") ?? false, "\(String(describing: state(disk).reason))")
        disk.patches = [:]
        try sh("xfs_db -x -c 'logformat -c 5' \(img) >/dev/null")
        XCTAssertTrue(try sh("xfs_logprint -t \(img) 2>&1").contains("<CLEAN>"))
        XCTAssertFalse(state(try FileDisk(img)).allActive, "cycle 5 before the head, cycle 4 after it")
        try sh("xfs_db -x -c 'logformat -c 7 -s 32768' \(img) >/dev/null")
        XCTAssertFalse(state(try FileDisk(img)).allActive, "a 32 KiB log stripe unit pads the unmount record")
    }

    /// Log layouts mkfs never writes, crafted over a real filesystem's log: an unmount record
    /// whose header is the log's last block and whose data wrapped to block 0 (one cycle later);
    /// one that ends exactly at the log's end (the whole log in one cycle). Both clean, as
    /// `xfs_logprint -t` says. A later cycle's block after the head (a log write that landed
    /// while the one before it had not) is dirty here, though xfs_logprint ignores it.
    static let craftLog = #"""
import re, struct, subprocess, sys
img, case = sys.argv[1], sys.argv[2]
daddr, n = map(int, re.search(r"daddr: (\d+) length: (\d+)", subprocess.run(["xfs_logprint", "-t", img], capture_output=True, text=True).stdout).groups())
uuid = open(img, "rb").read(48)[32:48]
f = open(img, "r+b")
def put(b, data): f.seek((daddr + b) * 512); f.write(data)
def header(cycle, block):
    h = bytearray(512)
    struct.pack_into(">IIIIQQIIII", h, 0, 0xFEEDBABE, cycle, 2, 512, cycle << 32 | block, cycle << 32 | block, 0, 0xFFFFFFFF, 1, 0xB0C0D0D0)
    struct.pack_into(">I", h, 300, 1); h[304:320] = uuid; struct.pack_into(">I", h, 320, 32768)
    return bytes(h)
def unmount(cycle): return struct.pack(">IIBB", cycle, 8, 0xAA, 0x20) + bytes(502)
def stale(cycle): return struct.pack(">I", cycle) + bytes(508)
first = {"wrap": 6, "end": 5, "inflight": 5}[case]
for b in range(n): put(b, stale(first))
if case == "wrap": put(n - 1, header(6, n - 1)); put(0, unmount(7))
else: put(n - 2, header(5, n - 2)); put(n - 1, unmount(5))
if case == "inflight": put(30, stale(6))
"""#

    func testCraftedLogLayouts() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let base = s.path("base.img")
        try sh("truncate -s 64M \(base) && TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f \(base)")
        try XFSTests.craftLog.write(toFile: s.path("craft.py"), atomically: true, encoding: .utf8)
        for (layout, clean) in [("wrap", true), ("end", true), ("inflight", false)] {
            let img = s.path(layout + ".img")
            try sh("cp \(base) \(img) && python3 \(s.path("craft.py")) \(img) \(layout)")
            if clean { XCTAssertTrue(try sh("xfs_logprint -t \(img) 2>&1").contains("<CLEAN>"), layout) }
            let v = ActiveBlockMapper.map(try FileDisk(img)).volumes[0]
            XCTAssertEqual(v.allActive, !clean, "\(layout): \(String(describing: v.reason))")
            if !clean { XCTAssertTrue(v.reason?.contains("written after its unmount record") ?? false, "\(String(describing: v.reason))") }
        }
    }

    /// Corrupt superblock, AGF, AGFL, bnobt blocks: all active with a warning naming the
    /// structure, never a crash; a v4 record that disagrees with the AGF's count too.
    func testCorruptStructuresAreAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = try XFSTests.makeXFS(s, "c.img", size: "64M")
        let g = try XFSTests.geometry(img)
        let bnoRoot = try XCTUnwrap(UInt64(try sh("xfs_db -r -c 'agf 1' -c 'p bnoroot' \(img) | awk '{ print $3 }'").trimmingCharacters(in: .whitespacesAndNewlines)))
        let disk = try FileDisk(img)
        let ag1 = g.agBlocks * g.blockSize
        for (offset, what) in [(UInt64(0x90), "superblock"), (ag1 + 512 + 52, "AGF 1"), (ag1 + 3 * 512 + 40, "AGFL 1"),
                               ((g.agBlocks + bnoRoot) * g.blockSize + 60, "bnobt block")] {
            disk.patches = [offset: 0x5A]
            let map = ActiveBlockMapper.map(disk, granularity: 512)
            XCTAssertEqual(map.activeBytes, disk.capacity, what)
            XCTAssertTrue(map.volumes[0].reason?.hasPrefix("corrupt:") ?? false, "\(what): \(String(describing: map.volumes[0].reason))")
            XCTAssertTrue(map.warnings.contains { $0.contains("all active") }, "\(what): \(map.warnings)")
        }
        let v4 = try XFSTests.makeXFS(s, "v4.img", size: "40M", options: "-m crc=0", pairs: 2)
        let g4 = try XFSTests.geometry(v4)
        let root4 = try XCTUnwrap(UInt64(try sh("xfs_db -r -c 'agf 0' -c 'p bnoroot' \(v4) | awk '{ print $3 }'").trimmingCharacters(in: .whitespacesAndNewlines)))
        let d4 = try FileDisk(v4)
        XCTAssertFalse(ActiveBlockMapper.map(d4).volumes[0].allActive)
        d4.patches = [root4 * g4.blockSize + 16 + 6: 0x7F]   // the first record's block count
        let bad = ActiveBlockMapper.map(d4)
        XCTAssertTrue(bad.volumes[0].allActive)
        XCTAssertTrue(bad.volumes[0].reason?.hasPrefix("corrupt:") ?? false, "\(String(describing: bad.volumes[0].reason))")
    }

    /// An XFS in an LVM2 LV (eight PEs), next to the generated PV's other LVs.
    func testXFSInsideAnLV() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let fs = try XFSTests.makeXFS(s, "lvxfs.img", size: "32M", options: "-d agcount=2", pairs: 20, fileSize: 5000)
        let extra = """
            data {
            id = "lv-data"
            segment_count = 1
            segment1 {
            start_extent = 0
            extent_count = 8
            type = "striped"
            stripe_count = 1
            stripes = ["pv0", 7]
            }
            }
            """
        let img = try LVMTests.makeDisk(s, extraLV: extra)
        let pe7 = LVMTests.partStart + LVMTests.P + 7 * LVMTests.E
        try sh("dd if=\(fs) of=\(img) bs=512 seek=\(pe7 / 512) conv=notrunc status=none")
        let map = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
        let lv = try XCTUnwrap(map.volumes.first { $0.name == "vg0/data" }, "\(map.volumes)")
        XCTAssertEqual(lv.filesystem, "xfs")
        XCTAssertFalse(lv.allActive, "\(lv)")
        let lvRange = ExtentSet([Extent(offset: pe7, length: 32 << 20)])
        XCTAssertEqual(lvRange.subtracting(map.active), try XFSTests.freesp(fs).shifted(by: pe7))
    }

    /// The hand-made seeds of the abm fuzz target (Fuzz/corpus/make-xfs-seeds.py) map to exactly
    /// the free blocks their trees and free lists hold, so the fuzzer starts from inputs that get
    /// all the way through; one flipped bit anywhere in their metadata makes them all active.
    func testFuzzSeedsMap() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Fuzz/corpus/abm").path
        let blocks: [String: [(UInt64, UInt64)]] = [
            "xfs-v5": [(6, 2), (10, 10), (56, 8), (72, 44)],
            "xfs-v4": [(6, 2), (10, 10), (56, 8), (72, 44)],
            "xfs-v5-deep": [(6, 2), (10, 10), (56, 8), (74, 2), (78, 2), (84, 10), (104, 10), (114, 2)],
        ]
        for (name, free) in blocks {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
            let d = MemoryDisk(size: bytes.count)
            d.bytes = bytes
            let map = ActiveBlockMapper.map(d, granularity: 512)
            XCTAssertEqual(map.volumes.first?.allActive, false, "\(name): \(map.volumes)")
            XCTAssertEqual(ExtentSet([Extent(offset: 0, length: map.capacity)]).subtracting(map.active),
                           ExtentSet(free.map { Extent(offset: $0.0 * 512, length: $0.1 * 512) }), name)
            // One flipped bit in: the superblock's label (v5: its CRC), AGF 0's free count, a live
            // AGFL entry (v4: the AGFL has no CRC, so the first entry), bnobt leaf 0's first record,
            // the unmount flag of the log's last record, AGF 1's bnobt root.
            let v4 = name == "xfs-v4"
            for (offset, bit) in [(v4 ? 0x60 : 0x70, 0x01), (512 + 0x37, 0x01), (3 * 512 + (v4 ? 3 : 40), 0x40),
                                  (4 * 512 + (v4 ? 16 : 56) + 7, 0x01), (41 * 512 + 9, 0x20), (64 * 512 + 512 + 19, 0x01)] {
                var bad = bytes
                bad[offset] ^= UInt8(bit)
                d.bytes = bad
                let m = ActiveBlockMapper.map(d, granularity: 512)
                XCTAssertEqual(m.activeBytes, m.capacity, "\(name), bit flipped at \(offset): \(m.volumes)")
            }
        }
    }
}
