import XCTest
import VZTestSupport
import VZCore
@testable import VZFormats

final class VzmapFileTests: XCTestCase {
    private let file = "/srv/replicas/job1/scsi0.vzmap"

    private func sampleMap(blocks: Int = 11, blockSize: UInt32 = 65536, seed: UInt64 = 1) -> BlockMap {
        var rng = SplitMix(seed: seed)
        let capacity = UInt64(blocks - 1) * UInt64(blockSize) + 123  // a short last block
        var m = BlockMap(blockSize: blockSize, capacity: capacity)
        for i in 0..<m.count {
            switch i % 3 {
            case 0: m[i] = .data(SHA256Digest((0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }))
            case 1: m[i] = .zero
            default: m[i] = .unknown
            }
        }
        return m
    }

    /// Re-seals the header checksum after a field was patched, so the field's own check is what fails.
    private func resealHeader(_ bytes: inout [UInt8]) {
        let crc = CRC32C.checksum(bytes[0..<60])
        for i in 0..<4 { bytes[60 + i] = UInt8(truncatingIfNeeded: crc >> (8 * i)) }
    }

    private func patch<T: FixedWidthInteger>(_ bytes: inout [UInt8], at offset: Int, _ v: T) {
        for i in 0..<MemoryLayout<T>.size { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) }
    }

    func testRoundTrip() throws {
        for (blocks, bs) in [(11, UInt32(65536)), (1, UInt32(1 << 20)), (300, UInt32(8 << 20))] {
            let m = sampleMap(blocks: blocks, blockSize: bs)
            let bytes = VzmapFile.encode(m, generation: 42, createdUnixSeconds: 1_700_000_000)
            XCTAssertEqual(UInt64(bytes.count), VzmapFile.fileSize(entryCount: UInt64(m.count)))
            let (h, decoded) = try VzmapFile.decode(bytes, fileName: file)
            XCTAssertEqual(decoded, m)
            XCTAssertEqual(h, VzmapFile.Header(blockSize: bs, capacity: m.capacity, generation: 42,
                                               entryCount: UInt64(m.count), createdUnixSeconds: 1_700_000_000))
            XCTAssertEqual(try VzmapFile.decodeHeader(bytes, fileName: file), h)
        }
    }

    func testEmptyDiskRoundTrip() throws {
        let m = BlockMap(blockSize: 65536, capacity: 0)
        let bytes = VzmapFile.encode(m, generation: 0, createdUnixSeconds: 0)
        XCTAssertEqual(bytes.count, 72)
        XCTAssertEqual(try VzmapFile.decode(bytes, fileName: file).1, m)
    }

    /// CRC-32C the slow way, bit by bit (Castagnoli, reflected polynomial 0x82F63B78, init and
    /// final XOR 0xFFFFFFFF): an oracle independent of the table-driven `CRC32C`.
    private func referenceCRC32C<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return ~crc
    }

    private func u32(_ b: [UInt8], at offset: Int) -> UInt32 {
        (0..<4).reduce(0) { $0 | UInt32(b[offset + $1]) << (8 * $1) }
    }

    func testReferenceCRC32CMatchesTheStandardCheckValue() {
        XCTAssertEqual(referenceCRC32C(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(referenceCRC32C([UInt8]()), 0)
    }

    /// The layout as Docs/formats.md §1 gives it, byte by byte: every header field at its offset,
    /// the entries, the trailer, both checksums at their positions with the values an independent
    /// CRC-32C computes over the documented ranges.
    func testLayout() throws {
        // SHA-256("abc") in digest order, the hash of entries[0].
        let sha256abc: [UInt8] = [
            0xBA, 0x78, 0x16, 0xBF, 0x8F, 0x01, 0xCF, 0xEA, 0x41, 0x41, 0x40, 0xDE, 0x5D, 0xAE, 0x22, 0x23,
            0xB0, 0x03, 0x61, 0xA3, 0x96, 0x17, 0x7A, 0x9C, 0xB4, 0x10, 0xFF, 0x61, 0xF2, 0x00, 0x15, 0xAD,
        ]
        // Two blocks of 64 KiB, the second one short (123 bytes): capacity 65659 = 0x1007B.
        var m = BlockMap(blockSize: 65536, capacity: 65536 + 123)
        m[0] = .data(SHA256Digest(sha256abc))
        m[1] = .zero
        let b = VzmapFile.encode(m, generation: 0x0102_0304_0506_0708, createdUnixSeconds: 1_700_000_000)

        let header: [UInt8] = [
            0x56, 0x5A, 0x52, 0x45, 0x50, 0x4D, 0x41, 0x50,  //  0 magic "VZREPMAP"
            0x01, 0x00, 0x00, 0x00,                          //  8 version 1
            0x00, 0x00, 0x01, 0x00,                          // 12 blockSize 65536
            0x7B, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // 16 capacity 65659
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // 24 generation 0x0102030405060708
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // 32 entryCount 2 = ceil(65659 / 65536)
            0x21, 0x00, 0x00, 0x00,                          // 40 entrySize 33
            0x00, 0x00, 0x00, 0x00,                          // 44 flags 0
            0x00, 0xF1, 0x53, 0x65, 0x00, 0x00, 0x00, 0x00,  // 48 createdUnixSeconds 1700000000 = 0x6553F100
            0x00, 0x00, 0x00, 0x00,                          // 56 reserved 0
        ]                                                    // 60 headerCRC32C, checked below
        let entries: [UInt8] = [0x01] + sha256abc            // entries[0]: kind 1 data, its SHA-256
            + [0x02] + [UInt8](repeating: 0, count: 32)      // entries[1]: kind 2 zero, 32 zero bytes
        XCTAssertEqual(header.count, 60)
        XCTAssertEqual(entries.count, 2 * 33)

        // File size: 64 + 33 x entryCount + 8.
        XCTAssertEqual(b.count, 64 + 33 * 2 + 8)
        XCTAssertEqual(Array(b[0..<60]), header)
        // headerCRC32C at 60: CRC-32C of bytes 0 ... 59.
        XCTAssertEqual(u32(b, at: 60), referenceCRC32C(header))
        XCTAssertEqual(Array(b[64..<130]), entries)
        // Trailer at 64 + 33 x 2 = 130: entriesCRC32C (of all entry bytes), then magic "VZME".
        XCTAssertEqual(u32(b, at: 130), referenceCRC32C(entries))
        XCTAssertEqual(Array(b[134..<138]), [0x56, 0x5A, 0x4D, 0x45])

        // And the reader takes these bytes back field for field.
        let (h, decoded) = try VzmapFile.decode(b, fileName: file)
        XCTAssertEqual(h, VzmapFile.Header(blockSize: 65536, capacity: 65659, generation: 0x0102_0304_0506_0708,
                                           entryCount: 2, createdUnixSeconds: 1_700_000_000))
        XCTAssertEqual(decoded, m)
    }

    /// An empty disk: 64-byte header, no entries, the trailer's CRC is that of no bytes (0).
    func testLayoutOfAnEmptyMap() {
        let b = VzmapFile.encode(BlockMap(blockSize: 1 << 20, capacity: 0), generation: 1, createdUnixSeconds: 0)
        XCTAssertEqual(b.count, 72)
        XCTAssertEqual(Array(b[12..<16]), [0x00, 0x00, 0x10, 0x00])  // blockSize 1 MiB
        XCTAssertEqual(Array(b[16..<24]), [UInt8](repeating: 0, count: 8))  // capacity 0
        XCTAssertEqual(Array(b[32..<40]), [UInt8](repeating: 0, count: 8))  // entryCount 0
        XCTAssertEqual(u32(b, at: 60), referenceCRC32C(b[0..<60]))
        XCTAssertEqual(Array(b[64..<72]), [0x00, 0x00, 0x00, 0x00, 0x56, 0x5A, 0x4D, 0x45])  // CRC of nothing, "VZME"
    }

    func testEveryTruncationRejected() {
        let bytes = VzmapFile.encode(sampleMap(), generation: 1, createdUnixSeconds: 1)
        for n in 0..<bytes.count {
            assertCorrupt(Array(bytes[..<n]), "truncated to \(n)")
        }
        assertCorrupt(bytes + [0], "one byte of padding")
    }

    func testEveryBitFlipDetected() {
        let bytes = VzmapFile.encode(sampleMap(), generation: 1, createdUnixSeconds: 1)
        for bit in 0..<bytes.count * 8 {
            var b = bytes
            b[bit / 8] ^= 1 << (bit % 8)
            assertCorrupt(b, "bit \(bit % 8) of byte \(bit / 8)")
        }
    }

    func testFieldsAreNamed() {
        let good = VzmapFile.encode(sampleMap(), generation: 1, createdUnixSeconds: 1)
        // Each field is named with the offset it starts at (Docs/formats.md).
        func check(_ field: String, at offset: Int, _ extra: [String] = [], _ mutate: (inout [UInt8]) -> Void) {
            var b = good
            mutate(&b)
            assertCorrupt(b, field, containing: ["field '\(field)' at byte \(offset):"] + extra)
        }
        let end = good.count - 8
        check("magic", at: 0) { $0[0] = UInt8(ascii: "X") }
        check("version", at: 8, ["version 2"]) { patch(&$0, at: 8, UInt32(2)); resealHeader(&$0) }
        check("blockSize", at: 12, ["100000"]) { patch(&$0, at: 12, UInt32(100_000)); resealHeader(&$0) }
        check("blockSize", at: 12, ["32768"]) { patch(&$0, at: 12, UInt32(32768)); resealHeader(&$0) }
        check("entryCount", at: 32, ["12 entries"]) { patch(&$0, at: 32, UInt64(12)); resealHeader(&$0) }
        check("entrySize", at: 40) { patch(&$0, at: 40, UInt32(32)); resealHeader(&$0) }
        check("flags", at: 44) { patch(&$0, at: 44, UInt32(1)); resealHeader(&$0) }
        check("headerCRC32C", at: 60, ["mismatch"]) { $0[50] ^= 0x01 }   // createdUnixSeconds: only the checksum covers it
        check("headerCRC32C", at: 60, ["mismatch"]) { $0[57] ^= 0x01 }   // reserved
        check("entriesCRC32C", at: end, ["mismatch"]) { $0[64 + 5] ^= 0x10 }
        check("trailerMagic", at: end + 4) { $0[$0.count - 1] = 0 }
        // A capacity that needs a different entry count is caught by the count check.
        check("entryCount", at: 32) { patch(&$0, at: 16, UInt64(100 * 65536)); resealHeader(&$0) }
    }

    /// Regression: a value rejected after it was read was reported at the byte after it (version
    /// at byte 12 instead of 8), and the trailer and entries at offsets counted from their slice.
    func testRegression_ErrorsNameTheFieldsOwnOffset() {
        var b = VzmapFile.encode(sampleMap(), generation: 1, createdUnixSeconds: 1)
        patch(&b, at: 8, UInt32(3))
        resealHeader(&b)
        assertCorrupt(b, "version 3", containing: ["field 'version' at byte 8:"])
        var t = VzmapFile.encode(sampleMap(), generation: 1, createdUnixSeconds: 1)
        t[t.count - 2] = 0
        assertCorrupt(t, "trailer", containing: ["field 'trailerMagic' at byte \(t.count - 4):"])
    }

    /// A map whose checksums are right but whose entries are invalid (a kind byte out of range)
    /// is still refused, naming the entry.
    func testInvalidEntryWithValidChecksums() {
        var b = VzmapFile.encode(sampleMap(), generation: 1, createdUnixSeconds: 1)
        b[64 + 33] = 9  // entries[1].kind
        let end = b.count - 8
        let crc = CRC32C.checksum(b[64..<end])
        for i in 0..<4 { b[end + i] = UInt8(truncatingIfNeeded: crc >> (8 * i)) }
        assertCorrupt(b, "entry kind 9", containing: ["field 'entries[1].kind' at byte 97:"])
    }

    private func assertCorrupt(_ bytes: [UInt8], _ what: String, containing parts: [String] = [],
                               file f: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try VzmapFile.decode(bytes, fileName: file)
            XCTFail("\(what): accepted", file: f, line: line)
        } catch let e as VZError {
            XCTAssertEqual(e.kind, .corruptMap, "\(what): \(e)", file: f, line: line)
            XCTAssertTrue(e.message.contains(file), "\(what): '\(e.message)' does not name the file", file: f, line: line)
            for p in parts {
                XCTAssertTrue(e.message.contains(p), "\(what): '\(e.message)' does not mention '\(p)'", file: f, line: line)
            }
        } catch {
            XCTFail("\(what): \(error)", file: f, line: line)
        }
    }
}

typealias SplitMix = SplitMix64
