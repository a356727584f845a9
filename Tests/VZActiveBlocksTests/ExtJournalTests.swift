import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// needs_recovery with the journal overlay: debugfs writes a committed transaction (jo/jw/jc)
/// that allocates 100 blocks of group 2 in its bitmap only; the on-disk bitmap still shows them
/// free. The oracle is the filesystem after `e2fsck -E journal_only` replays the journal, read
/// with dumpe2fs: nothing ABM calls free may be used after the replay.
final class ExtJournalTests: XCTestCase {
    func testJournalOverlayKeepsJournaledGroupsActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("j.img")
        try sh("truncate -s 32M \(img) && mke2fs -q -F -t ext4 -b 4096 -g 1024 -N 512 -d \(s.path("src")) \(img) 6000")
        let b = try sh("dumpe2fs \(img) 2>/dev/null | awk '/^Group 2:/{f=1} f && /Block bitmap at/{print $4; exit}'").trimmingCharacters(in: .whitespacesAndNewlines)
        let bitmapBlock = try XCTUnwrap(UInt64(b))
        try sh("""
            dd if=\(img) of=\(s.path("bm.bin")) bs=4096 skip=\(bitmapBlock) count=1 status=none && python3 -c "
            b=bytearray(open('\(s.path("bm.bin"))','rb').read())
            for i in range(100,200): b[i//8]|=1<<(i%8)
            open('\(s.path("bm.bin"))','wb').write(b)" && printf 'jo\\njw -b \(bitmapBlock) \(s.path("bm.bin"))\\njc\\n' > \(s.path("cmds")) && debugfs -w -f \(s.path("cmds")) \(img) >/dev/null 2>&1
            """)
        XCTAssertTrue(try sh("dumpe2fs -h \(img) 2>/dev/null").contains("needs_recovery"))
        let disk = try FileDisk(img)
        // Default: dirty means all active.
        let strict = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(strict.activeBytes, disk.capacity)
        XCTAssertTrue(strict.volumes[0].reason?.hasPrefix("dirty: needs_recovery") ?? false)
        // Overlay: mapped, group 2 active, and nothing free that the replayed filesystem uses.
        let map = ActiveBlockMapper.map(disk, granularity: 512, journalOverlay: true)
        XCTAssertEqual(map.volumes[0].allActive, false, "\(map.volumes)")
        XCTAssertTrue(map.warnings.contains { $0.contains("1 block group(s) whose bitmap the journal holds") }, "\(map.warnings)")
        let group2 = Extent(offset: 2048 * 4096, length: 1024 * 4096)
        XCTAssertTrue(map.active.covers(group2))
        try sh("cp --sparse=always \(img) \(s.path("replayed.img")) && e2fsck -E journal_only -y \(s.path("replayed.img")) >/dev/null 2>&1 || true")
        XCTAssertFalse(try sh("dumpe2fs -h \(s.path("replayed.img")) 2>/dev/null").contains("needs_recovery"), "the oracle replayed the journal")
        let replayedFree = try dumpe2fsFree(s.path("replayed.img"), offset: 0).free
        let free = ExtentSet([Extent(offset: 0, length: disk.capacity)]).subtracting(map.active)
        XCTAssertTrue(free.subtracting(replayedFree).isEmpty, "ABM freed blocks the replayed filesystem uses: \(free.subtracting(replayedFree))")
        // The blocks the transaction allocated are used after the replay, and active for ABM.
        XCTAssertTrue(replayedFree.intersection(ExtentSet([Extent(offset: (2048 + 100) * 4096, length: 100 * 4096)])).isEmpty)
        // Every other group is mapped as before the transaction.
        XCTAssertEqual(free, replayedFree.subtracting(ExtentSet([group2])))
    }

    /// needs_recovery with an empty journal (s_start 0: nothing to replay): with the overlay the
    /// map equals the clean filesystem's.
    func testEmptyJournalMapsLikeAClean() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        let img = s.path("j.img")
        try sh("truncate -s 32M \(img) && mke2fs -q -F -t ext4 -b 4096 -g 1024 -N 512 -d \(s.path("src")) \(img) 6000")
        let clean = ActiveBlockMapper.map(try FileDisk(img), granularity: 512)
        try sh("debugfs -w -R 'feature needs_recovery' \(img)")
        let overlay = ActiveBlockMapper.map(try FileDisk(img), granularity: 512, journalOverlay: true)
        XCTAssertEqual(overlay.active, clean.active)
        XCTAssertEqual(ActiveBlockMapper.map(try FileDisk(img), granularity: 512).activeBytes, clean.capacity, "default: all active")
    }
}
