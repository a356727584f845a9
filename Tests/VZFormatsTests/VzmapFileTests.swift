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

    /// The layout as Docs/formats.md gives it, byte by byte.
    func testLayout() {
        let m = sampleMap(blocks: 2)
        let b = VzmapFile.encode(m, generation: 0x0102, createdUnixSeconds: 7)
        XCTAssertEqual(Array(b[0..<8]), Array("VZREPMAP".utf8))
        XCTAssertEqual(Array(b[8..<12]), [1, 0, 0, 0])            // version
        XCTAssertEqual(Array(b[12..<16]), [0, 0, 1, 0])           // blockSize 65536
        XCTAssertEqual(Array(b[24..<32]), [2, 1, 0, 0, 0, 0, 0, 0])  // generation
        XCTAssertEqual(Array(b[32..<40]), [2, 0, 0, 0, 0, 0, 0, 0])  // entryCount
        XCTAssertEqual(Array(b[40..<44]), [33, 0, 0, 0])          // entrySize
        XCTAssertEqual(b[64], 1)                                  // entries[0].kind = data
        XCTAssertEqual(b[64 + 33], 2)                             // entries[1].kind = zero
        XCTAssertEqual(Array(b[(b.count - 4)...]), Array("VZME".utf8))
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
