import Foundation
import VZCore
import XCTest
@testable import VZActiveBlocks

/// A disk in memory, for crafted tables.
final class MemoryDisk: BlockReader {
    var bytes: [UInt8]
    var capacity: UInt64 { UInt64(bytes.count) }
    var displayName: String { "memory" }
    init(size: Int) { bytes = [UInt8](repeating: 0, count: size) }
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        precondition(offset + UInt64(buffer.count) <= capacity, "the mapper read past the end of the disk")
        bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset) + buffer.count])) }
    }
    func put32(_ v: UInt32, at o: Int) { for k in 0..<4 { bytes[o + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) } }
    /// An MBR-format entry in the sector at `sector`.
    func entry(sector: Int, slot: Int, type: UInt8, start: UInt32, count: UInt32) {
        let o = sector * 512 + 0x1BE + 16 * slot
        bytes[o + 4] = type
        put32(start, at: o + 8); put32(count, at: o + 12)
        bytes[sector * 512 + 510] = 0x55; bytes[sector * 512 + 511] = 0xAA
    }
}

final class PartitionTableTests: XCTestCase {
    func testEBRChainThatLoopsIsCutAndTheRestStaysActive() {
        let disk = MemoryDisk(size: 8 << 20)
        disk.entry(sector: 0, slot: 0, type: 0x05, start: 2048, count: 14336)
        // EBR at 2048: logical at +64 (16 sectors), next EBR at extBase + 4096.
        disk.entry(sector: 2048, slot: 0, type: 0x83, start: 64, count: 16)
        disk.entry(sector: 2048, slot: 1, type: 0x05, start: 4096, count: 100)
        // EBR at 6144: logical, then a link back to the first EBR (a loop).
        disk.entry(sector: 6144, slot: 0, type: 0x82, start: 64, count: 16)
        disk.entry(sector: 6144, slot: 1, type: 0x05, start: 0, count: 100)
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["p5", "p6"])
        XCTAssertEqual(map.volumes.map(\.offset), [(2048 + 64) * 512, (6144 + 64) * 512])
        XCTAssertTrue(map.warnings.contains { $0.contains("loops") }, "\(map.warnings)")
        XCTAssertEqual(map.activeBytes, disk.capacity, "nothing on this disk is a known filesystem")
    }

    func testEntriesOutsideTheDiskAndOverlapsStayActive() {
        let disk = MemoryDisk(size: 4 << 20)
        disk.entry(sector: 0, slot: 0, type: 0x82, start: 2048, count: 4096)
        disk.entry(sector: 0, slot: 1, type: 0x82, start: 4096, count: 2048)   // overlaps p1
        disk.entry(sector: 0, slot: 2, type: 0x83, start: 900_000, count: 10)  // past the end
        // A valid swap header in p1: it would free p1's pages, but p2 claims some of them.
        let p1 = 2048 * 512
        for (i, b) in Array("SWAPSPACE2".utf8).enumerated() { disk.bytes[p1 + 4086 + i] = b }
        disk.put32(1, at: p1 + 1024); disk.put32(4096 * 512 / 4096 - 1, at: p1 + 1028)
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["p1", "p2"])
        XCTAssertEqual(map.volumes.map(\.allActive), [true, true])
        XCTAssertTrue(map.volumes[0].reason?.contains("overlaps p2") ?? false)
        XCTAssertTrue(map.warnings.contains { $0.contains("p3") })
        XCTAssertEqual(map.activeBytes, disk.capacity)
    }

    /// Every disk size from nothing to past the tables, with an MBR, a protective MBR and a
    /// half-written GPT: the mapper never reads past the end (MemoryDisk traps) and never crashes.
    func testTruncatedDisksNeverCrash() {
        let full = MemoryDisk(size: 64 << 10)
        full.entry(sector: 0, slot: 0, type: 0xEE, start: 1, count: 0xFFFF_FFFF)
        for (i, b) in Array("EFI PART".utf8).enumerated() { full.bytes[512 + i] = b }
        full.put32(92, at: 512 + 12)
        let image = full.bytes
        for n in stride(from: 0, through: image.count, by: 512) {
            let d = MemoryDisk(size: n)
            d.bytes = Array(image[0..<n])
            let map = ActiveBlockMapper.map(d, granularity: 512)
            XCTAssertEqual(map.activeBytes, UInt64(n), "size \(n)")
        }
    }

    func testGPTGUIDTextIsMixedEndian() {
        let stored: [UInt8] = [0xA2, 0xA0, 0xD0, 0xEB, 0xE5, 0xB9, 0x33, 0x44, 0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7]
        XCTAssertEqual(GPT.formatGUID(stored), "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")
    }

    func testChecksumsMatchKnownVectors() {
        XCTAssertEqual(Checksums.crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(Checksums.crc32cRaw(0xFFFF_FFFF, Array("123456789".utf8)), ~UInt32(0xE306_9283))
    }
}

final class ReservedSectorTests: XCTestCase {
    /// A primary partition that overlaps the extended partition's EBR and holds swap (which would
    /// free everything after its header page): the EBR sector stays active, so the replica keeps
    /// its logical partitions.
    func testEBRSectorsStayActiveUnderAnOverlappingPartition() {
        let disk = MemoryDisk(size: 8 << 20)
        disk.entry(sector: 0, slot: 0, type: 0x82, start: 2048, count: 12288)  // p1 covers 2048..<14336
        disk.entry(sector: 0, slot: 1, type: 0x05, start: 10240, count: 8192)  // EBR at 10240, inside p1
        disk.entry(sector: 10240, slot: 0, type: 0x83, start: 4096, count: 16) // logical at 14336, past p1
        let p1 = 2048 * 512
        for (i, b) in Array("SWAPSPACE2".utf8).enumerated() { disk.bytes[p1 + 4086 + i] = b }
        disk.put32(1, at: p1 + 1024); disk.put32(12288 * 512 / 4096 - 1, at: p1 + 1028)
        let map = ActiveBlockMapper.map(disk, granularity: 512)
        XCTAssertEqual(map.volumes.map(\.name), ["p1", "p5"])
        XCTAssertEqual(map.volumes[0].allActive, false, "p1 is mapped: its swap pages are free")
        XCTAssertTrue(map.active.covers(Extent(offset: 10240 * 512, length: 512)), "the EBR was freed by the swap inside p1")
        XCTAssertTrue(map.active.covers(Extent(offset: 0, length: 512)))
    }
}
