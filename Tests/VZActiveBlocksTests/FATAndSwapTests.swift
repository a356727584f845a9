import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// FAT12/16/32 and swap straight on the whole disk, against mdir's free-space count and the
/// deleted file's bytes left in the image.
final class FATAndSwapTests: XCTestCase {
    func testFATTypesMatchMdir() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        try s.populate()
        for (bits, kib, options) in [(12, 4096, "-F 12 -s 4"), (16, 16384, "-F 16 -s 2"), (32, 40960, "-F 32 -s 1")] {
            let img = s.path("fat.img")
            try? FileManager.default.removeItem(atPath: img)
            try sh("mkfs.fat \(options) -S 512 -C \(img) \(kib)")
            for f in ["keep0.bin", "victim.bin", "keep1.bin"] { try sh("mcopy -i \(img) \(s.path("src/" + f)) ::\(f)") }
            try sh("mdel -i \(img) ::victim.bin")
            try sh("fsck.fat -n \(img)")
            let disk = try FileDisk(img)
            let map = ActiveBlockMapper.map(disk, granularity: 512)
            XCTAssertEqual(map.volumes.first?.filesystem, "fat\(bits)")
            XCTAssertEqual(map.volumes.first?.allActive, false, "\(map.volumes)")
            let mdir = try sh("mdir -i \(img) ::")
            let mdirFree = UInt64(mdir.split(separator: "\n").first { $0.contains("bytes free") }!.filter(\.isNumber))!
            XCTAssertEqual(disk.capacity - map.activeBytes, mdirFree, "FAT\(bits)")
            let victims = try victimChunks(img, unit: 512)
            XCTAssertGreaterThan(victims.count, 300)
            for v in victims { XCTAssertTrue(map.active.intersection(ExtentSet([Extent(offset: v, length: 512)])).isEmpty, "FAT\(bits): deleted data at \(v)") }
            // Every byte of the kept files is active: find their first 512 bytes in the image.
            let keep = [UInt8](try Data(contentsOf: URL(fileURLWithPath: s.path("src/keep0.bin"))).prefix(512))
            let image = [UInt8](try Data(contentsOf: URL(fileURLWithPath: img)))
            let at = stride(from: 0, to: image.count - 512, by: 512).first { image[$0..<($0 + 512)].elementsEqual(keep) }
            XCTAssertNotNil(at)
            if let at { XCTAssertTrue(map.active.covers(Extent(offset: UInt64(at), length: 300_000 / 512 * 512))) }
        }
    }

    func testDirtyFAT16IsAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = s.path("fat.img")
        try sh("mkfs.fat -F 16 -s 2 -S 512 -C \(img) 16384")
        let disk = try FileDisk(img)
        XCTAssertFalse(ActiveBlockMapper.map(disk).volumes[0].allActive)
        // FAT[1] of the first FAT (reserved sectors: BPB 0x0E) with the clean bit cleared.
        let reserved = UInt64(try sh("dd if=\(img) bs=1 skip=14 count=2 status=none | od -An -tu2").trimmingCharacters(in: .whitespacesAndNewlines))!
        disk.patches[reserved * 512 + 3] = 0x7F
        let map = ActiveBlockMapper.map(disk)
        XCTAssertEqual(map.activeBytes, disk.capacity)
        XCTAssertTrue(map.volumes[0].reason?.hasPrefix("dirty") ?? false)
    }

    func testSwapHeaderOnlyAndHibernatedSwapAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = s.path("swap.img")
        try sh("truncate -s 16M \(img) && mkswap -L abmswap \(img)")
        let disk = try FileDisk(img)
        let map = ActiveBlockMapper.map(disk)
        XCTAssertEqual(map.volumes.map(\.filesystem), ["swap"])
        XCTAssertEqual(map.active, ExtentSet([Extent(offset: 0, length: 4096)]))
        for (i, b) in Array("S1SUSPEND\0".utf8).enumerated() { disk.patches[4096 - 10 + UInt64(i)] = b }
        let hibernated = ActiveBlockMapper.map(disk)
        XCTAssertEqual(hibernated.activeBytes, disk.capacity)
        XCTAssertEqual(hibernated.volumes[0].reason, "hibernated swap: it holds a hibernation image")
    }

    func testUnknownAndEncryptedVolumesAreAllActive() throws {
        let s = try Scratch(); defer { s.cleanUp() }
        let img = s.path("luks.img")
        try sh("truncate -s 8M \(img) && printf 'LUKS\\xba\\xbe' | dd of=\(img) conv=notrunc status=none")
        let luks = ActiveBlockMapper.map(try FileDisk(img))
        XCTAssertEqual(luks.volumes[0].filesystem, "luks")
        XCTAssertEqual(luks.activeBytes, luks.capacity)
        XCTAssertEqual(luks.volumes[0].reason, "encrypted: LUKS")
        try sh("truncate -s 0 \(img) && truncate -s 8M \(img)")
        let empty = ActiveBlockMapper.map(try FileDisk(img))
        XCTAssertEqual(empty.activeBytes, empty.capacity)
        XCTAssertTrue(empty.volumes[0].reason?.hasPrefix("unknown") ?? false)
    }
}
