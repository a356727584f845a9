import Foundation
import XCTest

/// End to end with `"abm": true`: a GPT disk with ext4, FAT16 and swap, each holding deleted
/// data; after the seed the replica's filesystems pass e2fsck -fn / fsck.fat -n, every file
/// reads back identical through debugfs and mtype, no deleted byte reached the replica, and the
/// source read no more than the active blocks.
final class ABMReplicationTests: XCTestCase {
    var h: AgentHarness!
    let bs = 65536
    static let pattern = "DELETED-VICTIM-PATTERN-0123456789abcdef-"
    let p1: UInt64 = 2048 * 512, p2: UInt64 = 51200 * 512, p3: UInt64 = 83968 * 512

    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    @discardableResult
    func sh(_ command: String) throws -> String {
        let r = try AgentHarness.run(["/bin/bash", "-c", "export MTOOLS_SKIP_CHECK=1 PATH=$PATH:/usr/sbin:/sbin; " + command])
        guard r.status == 0 else { throw NSError(domain: "sh", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: "\(command): \(r.stdout) \(r.stderr)"]) }
        return r.stdout
    }

    func makeDisk() throws -> String {
        let img = h.dir + "/vm.img", src = h.dir + "/src"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try AgentHarness.randomBytes(300_000, seed: 1).write(to: URL(fileURLWithPath: src + "/keep0.bin"))
        try AgentHarness.textBytes(70_000, seed: 3).write(to: URL(fileURLWithPath: src + "/keep1.txt"))
        let victim = Data(String(repeating: ABMReplicationTests.pattern, count: 5000).utf8)
        try victim.write(to: URL(fileURLWithPath: src + "/victim.bin"))
        try sh("truncate -s 64M \(img) && sgdisk -o -n 1:2048:+24M -t 1:8300 -n 2:0:+16M -t 2:0700 -n 3:0:+8M -t 3:8200 \(img) >/dev/null")
        try sh("mke2fs -q -t ext4 -b 4096 -g 1024 -N 512 -E offset=\(p1) -d \(src) \(img) 6144")
        try sh("debugfs -w -R 'rm /victim.bin' '\(img)?offset=\(p1)'")
        try sh("mkfs.fat -F 16 -s 2 -S 512 -h 51200 --offset 51200 \(img) 16384 >/dev/null")
        for f in ["keep0.bin", "victim.bin", "keep1.txt"] { try sh("mcopy -i \(img)@@\(p2) \(src)/\(f) ::\(f)") }
        try sh("mdel -i \(img)@@\(p2) ::victim.bin")
        try sh("truncate -s 8M \(h.dir)/swap && mkswap \(h.dir)/swap >/dev/null 2>&1 && dd if=\(h.dir)/swap of=\(img) bs=512 seek=83968 conv=notrunc status=none")
        // Stale pages in the swap area: worthless after a reboot, never to be sent.
        try AgentHarness.write(victim, to: img, at: p3 + 65536)
        return img
    }

    func count(_ needle: String, in path: String) throws -> Int {
        let r = try AgentHarness.run(["/bin/bash", "-c", "grep -c -a -F '\(needle)' '\(path)' || true"])
        return Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    func testSeedWithABMSkipsDeletedDataAndKeepsFilesystemsIntact() throws {
        let img = try makeDisk()
        XCTAssertGreaterThan(try count(ABMReplicationTests.pattern, in: img), 0, "the fixture leaves deleted data behind")
        let work = h.dir + "/work/vm1"
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: bs, extra: ["abm": true, "workDir": work])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr + r.stdout)
        let replica = "\(h.root)/vm1/disk0-flat.vmdk"

        // Events: the volumes before the blocks, activeBytes in disk-finished.
        let volumes = try XCTUnwrap(r.events("volumes").first)
        let list = try XCTUnwrap(volumes["volumes"] as? [[String: Any]])
        XCTAssertEqual(list.map { $0["filesystem"] as? String }, ["ext4", "fat16", "swap"])
        XCTAssertEqual(list.map { $0["allActive"] as? Bool }, [false, false, false])
        XCTAssertEqual(list[2]["activeBytes"] as? Int, 4096, "swap: the header page")
        let finished = try XCTUnwrap(r.finished())
        let active = try XCTUnwrap(finished["activeBytes"] as? Int)
        XCTAssertEqual(active, volumes["activeBytes"] as? Int)
        XCTAssertLessThan(active, 64 << 20 / 2, "less than half of the disk is in use")
        // Only active blocks were read: at most the active bytes rounded out to whole blocks.
        let scanned = try XCTUnwrap(finished["scannedBytes"] as? Int)
        XCTAssertLessThan(scanned, 64 << 20 / 2)
        let idx = try XCTUnwrap(r.stdout.range(of: "\"event\":\"volumes\""))
        let firstProgress = r.stdout.range(of: "\"event\":\"disk-finished\"")!
        XCTAssertLessThan(idx.lowerBound, firstProgress.lowerBound)
        // The filter is gone once the disk is done.
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/disk0.vmdk-abbt.vztemp"))

        // No deleted byte reached the replica; the filesystems check clean; files are identical.
        let where_ = (try? sh("grep -b -o -a -F '\(ABMReplicationTests.pattern)' \(replica) | head -3; grep -b -o -a -F '\(ABMReplicationTests.pattern)' \(replica) | tail -3")) ?? ""
        XCTAssertEqual(try count(ABMReplicationTests.pattern, in: replica), 0, "deleted data was replicated: " + where_)
        try sh("dd if=\(replica) of=\(h.dir)/p1.img bs=512 skip=2048 count=49152 status=none && e2fsck -fn \(h.dir)/p1.img")
        try sh("dd if=\(replica) of=\(h.dir)/p2.img bs=512 skip=51200 count=32768 status=none && fsck.fat -n \(h.dir)/p2.img")
        for f in ["keep0.bin", "keep1.txt"] {
            try sh("debugfs -R 'cat /\(f)' '\(replica)?offset=\(p1)' > \(h.dir)/e-\(f) 2>/dev/null && cmp \(h.dir)/e-\(f) \(h.dir)/src/\(f)")
            try sh("mtype -i \(replica)@@\(p2) ::\(f) > \(h.dir)/f-\(f) && cmp \(h.dir)/f-\(f) \(h.dir)/src/\(f)")
        }
        try sh("sgdisk -v \(replica) | grep -q 'No problems found'")
        // The swap header survived, so the replica's swap is still swap.
        XCTAssertTrue(try sh("dd if=\(replica) bs=1 skip=\(p3 + 4086) count=10 status=none") == "SWAPSPACE2")

        // --keep-temp leaves the filter for a field engineer; its header is what formats.md says.
        let kept = try AgentHarness.run([AgentHarness.source, "replicate", "--job", job, "--keep-temp", "--log-file", h.dir + "/source.log"])
        XCTAssertEqual(kept.status, 0, kept.stderr)
        let filter = try Data(contentsOf: URL(fileURLWithPath: work + "/disk0.vmdk-abbt.vztemp"))
        XCTAssertEqual(Array(filter.prefix(8)), Array("VZABBT".utf8) + [0, 0])
        XCTAssertEqual(filter.count, 48 + 8 + 16 * Int(filter[24..<32].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }))
        XCTAssertEqual(try count(ABMReplicationTests.pattern, in: replica), 0)
    }

    /// A second pass after the guest deleted one file and wrote another: the new file's blocks
    /// (free, never sent, at the seed) travel, the replica's filesystems stay clean and every
    /// file is identical; a third pass with nothing changed sends nothing.
    func testIncrementalPassesWithABMFollowTheFilesystem() throws {
        let img = try makeDisk()
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: bs, extra: ["abm": true, "workDir": h.dir + "/work"])
        XCTAssertEqual(try h.replicate(job).status, 0)
        let replica = "\(h.root)/vm1/disk0-flat.vmdk"
        let fresh = AgentHarness.randomBytes(500_000, seed: 9)
        try fresh.write(to: URL(fileURLWithPath: h.dir + "/src/fresh.bin"))
        try sh("debugfs -w -R 'rm /keep1.txt' '\(img)?offset=\(p1)'")
        try sh("debugfs -w -R 'write \(h.dir)/src/fresh.bin fresh.bin' '\(img)?offset=\(p1)'")
        try sh("mcopy -i \(img)@@\(p2) \(h.dir)/src/fresh.bin ::fresh.bin")
        let second = try h.replicate(job)
        XCTAssertEqual(second.status, 0, second.stderr)
        let f = try XCTUnwrap(second.finished())
        XCTAssertGreaterThanOrEqual(f["changedBytes"] as? Int ?? 0, 2 * 500_000, "both copies of the new file travelled")
        try sh("dd if=\(replica) of=\(h.dir)/p1.img bs=512 skip=2048 count=49152 status=none && e2fsck -fn \(h.dir)/p1.img")
        try sh("dd if=\(replica) of=\(h.dir)/p2.img bs=512 skip=51200 count=32768 status=none && fsck.fat -n \(h.dir)/p2.img")
        for file in ["keep0.bin", "fresh.bin"] {
            try sh("debugfs -R 'cat /\(file)' '\(replica)?offset=\(p1)' > \(h.dir)/e-\(file) 2>/dev/null && cmp \(h.dir)/e-\(file) \(h.dir)/src/\(file)")
        }
        for file in ["keep0.bin", "keep1.txt", "fresh.bin"] {
            try sh("mtype -i \(replica)@@\(p2) ::\(file) > \(h.dir)/f-\(file) && cmp \(h.dir)/f-\(file) \(h.dir)/src/\(file)")
        }
        XCTAssertTrue(try sh("debugfs -R 'ls /' '\(replica)?offset=\(p1)' 2>/dev/null").contains("fresh.bin"))
        let third = try h.replicate(job)
        XCTAssertEqual(third.status, 0)
        XCTAssertEqual(third.finished()?["changedBytes"] as? Int, 0)
        XCTAssertEqual(third.finished()?["dataBlocks"] as? Int, 0)
    }

    /// `plan` with ABM: the extents it would read lie inside the active blocks, and its numbers
    /// are those of the pass that follows (seed, then after the guest wrote a file).
    func testPlanWithABMMatchesThePass() throws {
        let img = try makeDisk()
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: bs, extra: ["abm": true, "workDir": h.dir + "/work"])
        func planThenPass() throws {
            let p = try AgentHarness.run([AgentHarness.source, "plan", "--job", job, "--log-file", h.dir + "/source.log"])
            XCTAssertEqual(p.status, 0, p.stdout + p.stderr)
            let plan = try XCTUnwrap(p.events("disk-plan").first, p.stdout)
            XCTAssertNotNil(p.events("volumes").first, "the plan maps the volumes like a pass")
            let read = (plan["readExtents"] as? [[Int]] ?? []).reduce(0) { $0 + $1[1] }
            let active = plan["activeBytes"] as? Int ?? 0
            XCTAssertGreaterThan(read, 0)
            XCTAssertLessThan(read, active + 64 * bs, "reads only blocks touching active bytes")
            let r = try h.replicate(job)
            XCTAssertEqual(r.status, 0, r.stdout)
            let f = try XCTUnwrap(r.finished())
            for key in ["activeBytes", "scannedBytes", "dataBlocks", "sentBytes", "zeroBytes", "changedBytes"] {
                XCTAssertEqual(plan[key] as? Int, f[key] as? Int, key)
            }
        }
        try planThenPass()
        try AgentHarness.randomBytes(300_000, seed: 12).write(to: URL(fileURLWithPath: h.dir + "/src/new.bin"))
        try sh("debugfs -w -R 'write \(h.dir)/src/new.bin new.bin' '\(img)?offset=\(p1)'")
        try planThenPass()
    }

    /// A crash-consistent snapshot: ext4 with needs_recovery and a committed transaction in its
    /// journal that allocates blocks of group 2 (debugfs jo/jw/jc). With "abmJournalOverlay" the
    /// volume is mapped, and the replica, once its journal is replayed (e2fsck -E journal_only),
    /// passes e2fsck -fn with every file identical.
    func testDirtyExt4WithJournalOverlay() throws {
        let img = try makeDisk()
        let b = try sh("dumpe2fs '\(img)?offset=\(p1)' 2>/dev/null | awk '/^Group 2:/{f=1} f && /Block bitmap at/{print $4; exit}'").trimmingCharacters(in: .whitespacesAndNewlines)
        try sh("""
            dd if=\(img) of=\(h.dir)/bm.bin bs=4096 skip=$(( \(p1 / 4096) + \(b) )) count=1 status=none && python3 -c "
            b=bytearray(open('\(h.dir)/bm.bin','rb').read())
            for i in range(100,200): b[i//8]|=1<<(i%8)
            open('\(h.dir)/bm.bin','wb').write(b)" && printf 'jo\\njw -b \(b) \(h.dir)/bm.bin\\njc\\n' > \(h.dir)/cmds && debugfs -w -f \(h.dir)/cmds '\(img)?offset=\(p1)' >/dev/null 2>&1
            """)
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: bs, extra: ["abm": true, "abmJournalOverlay": true, "workDir": h.dir + "/work"])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        let vols = try XCTUnwrap(r.events("volumes").first?["volumes"] as? [[String: Any]])
        XCTAssertEqual(vols.first?["allActive"] as? Bool, false, "\(vols)")
        let warnings = r.events("volumes").first?["warnings"] as? [String] ?? []
        XCTAssertTrue(warnings.contains { $0.contains("whose bitmap the journal holds") }, "\(warnings)")
        let replica = "\(h.root)/vm1/disk0-flat.vmdk"
        try sh("dd if=\(replica) of=\(h.dir)/p1.img bs=512 skip=2048 count=49152 status=none && (e2fsck -E journal_only -y \(h.dir)/p1.img >/dev/null 2>&1 || true)")
        XCTAssertFalse(try sh("dumpe2fs -h \(h.dir)/p1.img 2>/dev/null").contains("needs_recovery"))
        // The replayed transaction allocated blocks no file owns: e2fsck -fn reports that
        // difference, exactly as it does on the source after the same replay.
        try sh("dd if=\(img) of=\(h.dir)/src-p1.img bs=512 skip=2048 count=49152 status=none && (e2fsck -E journal_only -y \(h.dir)/src-p1.img >/dev/null 2>&1 || true)")
        let onReplica = try AgentHarness.run(["/bin/bash", "-c", "PATH=$PATH:/usr/sbin e2fsck -fn \(h.dir)/p1.img 2>&1 | grep -v '^e2fsck\\|p1.img'"])
        let onSource = try AgentHarness.run(["/bin/bash", "-c", "PATH=$PATH:/usr/sbin e2fsck -fn \(h.dir)/src-p1.img 2>&1 | grep -v '^e2fsck\\|src-p1.img'"])
        XCTAssertEqual(onReplica.stdout, onSource.stdout, "the replica checks exactly like the source")
        for f in ["keep0.bin", "keep1.txt"] {
            try sh("debugfs -R 'cat /\(f)' \(h.dir)/p1.img > \(h.dir)/e-\(f) 2>/dev/null && cmp \(h.dir)/e-\(f) \(h.dir)/src/\(f)")
        }
        XCTAssertEqual(try count(ABMReplicationTests.pattern, in: replica), 0)
    }

    /// A workDir that cannot be made fails the pass as a source error (exit 3) that names it,
    /// before any block is sent.
    func testUnusableWorkDirFailsThePassAsASourceError() throws {
        let img = try makeDisk()
        FileManager.default.createFile(atPath: h.dir + "/a-file", contents: Data())
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: bs, extra: ["abm": true, "workDir": h.dir + "/a-file/work"])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 3, r.stdout)
        let error = try XCTUnwrap(r.events("error").first)
        XCTAssertEqual(error["kind"] as? String, "sourceIO")
        XCTAssertTrue((error["message"] as? String ?? "").contains("a-file/work"), "\(error)")
        XCTAssertNil(r.finished())
    }

    func testABMOffReadsEverythingAndReportsCapacityAsActive() throws {
        let img = try makeDisk()
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: bs, extra: ["workDir": h.dir + "/work"])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.events("volumes").isEmpty)
        XCTAssertEqual(r.finished()?["activeBytes"] as? Int, 64 << 20)
        // Without ABM the deleted data travels: the oracle above can tell the difference.
        XCTAssertGreaterThan(try count(ABMReplicationTests.pattern, in: "\(h.root)/vm1/disk0-flat.vmdk"), 0)
    }
}

/// End to end with NTFS: an MBR disk whose NTFS partition holds a file freed by ntfstruncate;
/// after an ABM seed the replica passes `ntfsfix -n`, `ntfscat` reads every kept file back
/// identical, and the freed file's bytes are not on the replica.
final class ABMNTFSReplicationTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }

    @discardableResult
    func sh(_ command: String) throws -> String {
        let r = try AgentHarness.run(["/bin/bash", "-c", "export PATH=$PATH:/usr/sbin:/sbin; " + command])
        guard r.status == 0 else { throw NSError(domain: "sh", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: "\(command): \(r.stdout) \(r.stderr)"]) }
        return r.stdout
    }

    func testNTFSSeedWithABM() throws {
        let src = h.dir + "/src", part = h.dir + "/ntfs.img", img = h.dir + "/vm.img"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        try AgentHarness.randomBytes(400_000, seed: 4).write(to: URL(fileURLWithPath: src + "/keep.bin"))
        try AgentHarness.textBytes(90_000, seed: 8).write(to: URL(fileURLWithPath: src + "/notes.txt"))
        try Data(String(repeating: ABMReplicationTests.pattern, count: 8000).utf8).write(to: URL(fileURLWithPath: src + "/victim.bin"))
        try sh("truncate -s 32M \(part) && mkntfs -q -F -f -s 512 -c 4096 -p 2048 -H 255 -S 63 \(part) 65535 2>/dev/null")
        for f in ["keep.bin", "victim.bin", "notes.txt"] { try sh("ntfscp -q \(part) \(src)/\(f) \(f)") }
        let inode = try sh("ntfsls -i \(part) | awk '$2 == \"victim.bin\" { print $1 }'").trimmingCharacters(in: .whitespacesAndNewlines)
        try sh("ntfstruncate \(part) \(inode) 0")
        try sh("truncate -s 48M \(img) && printf 'label: dos\\nstart=2048, size=65536, type=7\\n' | sfdisk -q \(img) && dd if=\(part) of=\(img) bs=512 seek=2048 conv=notrunc status=none")
        XCTAssertGreaterThan(Int(try sh("grep -c -a -F '\(ABMReplicationTests.pattern)' \(img) || true").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, 0)
        let job = try h.writeJob(disks: [("disk0", img)], blockSize: 65536, extra: ["abm": true, "workDir": h.dir + "/work"])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        let vols = try XCTUnwrap(r.events("volumes").first?["volumes"] as? [[String: Any]])
        XCTAssertEqual(vols.map { $0["filesystem"] as? String }, ["ntfs"])
        XCTAssertEqual(vols.first?["allActive"] as? Bool, false)
        let replica = "\(h.root)/vm1/disk0-flat.vmdk"
        XCTAssertEqual(try sh("grep -c -a -F '\(ABMReplicationTests.pattern)' \(replica) || true").trimmingCharacters(in: .whitespacesAndNewlines), "0")
        // mkntfs was given 65535 sectors: its backup boot sector is the last of them, where ntfsfix looks.
        try sh("dd if=\(replica) of=\(h.dir)/p.img bs=512 skip=2048 count=65535 status=none && ntfsfix -n \(h.dir)/p.img")
        for f in ["keep.bin", "notes.txt"] { try sh("ntfscat \(h.dir)/p.img \(f) | cmp - \(src)/\(f)") }
        XCTAssertLessThan(r.finished()?["scannedBytes"] as? Int ?? .max, 8 << 20)
    }
}

/// End to end with XFS: a GPT disk whose XFS partition (mkfs.xfs from a protofile; victims
/// emptied with xfs_db -x and their blocks freed by xfs_repair, their bytes left behind) is
/// seeded with ABM. The replica passes `xfs_repair -n`, every kept file reads back identical
/// through its extents as `xfs_db bmap` lists them, and no deleted byte was sent.
final class ABMXFSReplicationTests: XCTestCase {
    var h: AgentHarness!
    override func setUpWithError() throws { h = try AgentHarness(name) }
    override func tearDown() { h.cleanUp() }
    let p1: UInt64 = 2048 * 512

    @discardableResult
    func sh(_ command: String) throws -> String {
        let r = try AgentHarness.run(["/bin/bash", "-c", "export PATH=$PATH:/usr/sbin:/sbin TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1; " + command])
        guard r.status == 0 else { throw NSError(domain: "sh", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: "\(command): \(r.stdout) \(r.stderr)"]) }
        return r.stdout
    }

    /// A file's bytes read from an XFS image through `xfs_db`'s inode size and extent map.
    static let extract = #"""
import re, subprocess, sys
img, name, out = sys.argv[1:]
def db(*cmds):
    return subprocess.run(["xfs_db", "-r"] + [a for c in cmds for a in ("-c", c)] + [img], check=True, capture_output=True, text=True).stdout
sb = dict(re.findall(r"^(\w+) = (\d+)$", db("sb 0", "p blocksize agblocks agblklog"), re.M))
bs, agblocks, agblklog = int(sb["blocksize"]), int(sb["agblocks"]), int(sb["agblklog"])
ino = [l.split()[1] for l in db("ls /").splitlines() if l.split()[-2:-1] == [name]][0]
size = int(re.search(r"core.size = (\d+)", db("inode " + ino, "p core.size")).group(1))
data = bytearray(size)
f = open(img, "rb")
for m in re.finditer(r"data offset (\d+) startblock (\d+) \(\d+/\d+\) count (\d+)", db("inode " + ino, "bmap")):
    off, fsb, count = map(int, m.groups())
    f.seek(((fsb >> agblklog) * agblocks + (fsb & ((1 << agblklog) - 1))) * bs)
    chunk = f.read(count * bs)
    data[off * bs:off * bs + len(chunk)] = chunk
open(out, "wb").write(bytes(data[:size]))
"""#

    func testXFSSeedWithABM() throws {
        let src = h.dir + "/src", fs = h.dir + "/xfs.img", img = h.dir + "/vm.img"
        try FileManager.default.createDirectory(atPath: src, withIntermediateDirectories: true)
        var proto = "/dummy\n0 0\nd--755 0 0\n"
        let victim = Data(String(repeating: ABMReplicationTests.pattern, count: 3000).utf8)
        for i in 0..<4 {
            try AgentHarness.randomBytes(150_000 + 4096 * i, seed: UInt64(10 + i)).write(to: URL(fileURLWithPath: "\(src)/keep\(i).bin"))
            try victim.write(to: URL(fileURLWithPath: "\(src)/victim\(i).bin"))
            proto += "keep\(i).bin ---644 0 0 \(src)/keep\(i).bin\nvictim\(i).bin ---644 0 0 \(src)/victim\(i).bin\n"
        }
        try AgentHarness.textBytes(40_000, seed: 5).write(to: URL(fileURLWithPath: "\(src)/notes.txt"))
        proto += "notes.txt ---644 0 0 \(src)/notes.txt\n$\n"
        try proto.write(toFile: h.dir + "/proto", atomically: true, encoding: .utf8)
        try sh("truncate -s 64M \(fs) && mkfs.xfs -q -f -p \(h.dir)/proto \(fs)")
        let zap = try sh("xfs_db -r -c 'ls /' \(fs) | awk '$NF == \"(good)\" && $(NF-1) ~ /^victim/ { printf \" -c \\\"inode %s\\\" -c \\\"write core.nextents 0\\\" -c \\\"write core.size 0\\\"\", $2 }'")
        try sh("xfs_db -x \(zap) \(fs) >/dev/null && xfs_repair \(fs) >/dev/null 2>&1")
        try sh("truncate -s 80M \(img) && sgdisk -o -n 1:2048:+64M -t 1:8300 \(img) >/dev/null && dd if=\(fs) of=\(img) bs=512 seek=2048 conv=notrunc status=none")
        let deleted = Int(try sh("grep -c -a -F '\(ABMReplicationTests.pattern)' \(img) || true").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        XCTAssertGreaterThan(deleted, 0, "the victims' bytes are on the disk")

        let job = try h.writeJob(disks: [("disk0", img)], blockSize: 65536, extra: ["abm": true, "workDir": h.dir + "/work"])
        let r = try h.replicate(job)
        XCTAssertEqual(r.status, 0, r.stderr)
        let vols = try XCTUnwrap(r.events("volumes").first?["volumes"] as? [[String: Any]])
        XCTAssertEqual(vols.map { $0["filesystem"] as? String }, ["xfs"])
        XCTAssertEqual(vols.first?["allActive"] as? Bool, false, "\(vols)")
        let replica = "\(h.root)/vm1/disk0-flat.vmdk"
        XCTAssertEqual(try sh("grep -c -a -F '\(ABMReplicationTests.pattern)' \(replica) || true").trimmingCharacters(in: .whitespacesAndNewlines), "0",
                       "deleted data was replicated")
        try sh("dd if=\(replica) of=\(h.dir)/p.img bs=512 skip=2048 count=131072 status=none && xfs_repair -n \(h.dir)/p.img")
        try Data(ABMXFSReplicationTests.extract.utf8).write(to: URL(fileURLWithPath: h.dir + "/extract.py"))
        for f in (0..<4).map({ "keep\($0).bin" }) + ["notes.txt"] {
            try sh("python3 \(h.dir)/extract.py \(h.dir)/p.img \(f) \(h.dir)/out-\(f) && cmp \(h.dir)/out-\(f) \(src)/\(f)")
        }
        XCTAssertLessThan(r.finished()?["scannedBytes"] as? Int ?? .max, 16 << 20)
    }
}
