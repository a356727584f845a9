import VZCore
import XCTest
@testable import VZFormats

/// The active-block filter file (Docs/formats.md): golden bytes, round trip, and every
/// truncation and single-byte corruption refused with a `.sourceIO` error, never a crash.
final class ActiveBlockFilterFileTests: XCTestCase {
    let filter = ActiveBlockFilterFile.Filter(granularity: 512, capacity: 1 << 20,
                                              active: ExtentSet([Extent(offset: 0, length: 4096), Extent(offset: 65536, length: 512)]))

    func testGoldenLayout() throws {
        let b = ActiveBlockFilterFile.encode(filter)
        XCTAssertEqual(b.count, 48 + 2 * 16 + 8)
        XCTAssertEqual(Array(b[0..<8]), [0x56, 0x5A, 0x41, 0x42, 0x42, 0x54, 0, 0])  // "VZABBT\0\0"
        XCTAssertEqual(Array(b[8..<12]), [1, 0, 0, 0])  // version
        XCTAssertEqual(Array(b[12..<16]), [0, 2, 0, 0])  // granularity 512
        XCTAssertEqual(Array(b[16..<24]), [0, 0, 0x10, 0, 0, 0, 0, 0])  // capacity 1 MiB
        XCTAssertEqual(Array(b[24..<32]), [2, 0, 0, 0, 0, 0, 0, 0])  // extentCount
        XCTAssertEqual(Array(b[32..<40]), [0, 0x12, 0, 0, 0, 0, 0, 0])  // activeBytes 4608
        XCTAssertEqual(Array(b[40..<44]), [0, 0, 0, 0])  // flags
        XCTAssertEqual(Array(b[44..<48]), withUnsafeBytes(of: CRC32C.checksum(b[0..<44]).littleEndian, Array.init))
        XCTAssertEqual(Array(b[48..<64]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0])  // [0, +4096)
        XCTAssertEqual(Array(b[64..<80]), [0, 0, 1, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0])  // [65536, +512)
        XCTAssertEqual(Array(b[80..<84]), withUnsafeBytes(of: CRC32C.checksum(b[48..<80]).littleEndian, Array.init))
        XCTAssertEqual(Array(b[84..<88]), Array("VZAE".utf8))
        XCTAssertEqual(try ActiveBlockFilterFile.decode(b, fileName: "f"), filter)
    }

    func testEveryTruncationAndByteFlipIsRefused() {
        let b = ActiveBlockFilterFile.encode(filter)
        for n in 0..<b.count {
            XCTAssertThrowsError(try ActiveBlockFilterFile.decode(Array(b[0..<n]), fileName: "f")) {
                XCTAssertEqual(($0 as? VZError)?.kind, .sourceIO)
            }
        }
        for i in 0..<b.count {
            var c = b
            c[i] ^= 0x01
            XCTAssertThrowsError(try ActiveBlockFilterFile.decode(c, fileName: "f"), "flip at \(i)")
        }
    }

    func testOverlappingOrOutOfRangeExtentsAreRefusedEvenWithGoodChecksums() {
        for bad in [[Extent(offset: 0, length: 10), Extent(offset: 10, length: 5)],  // touching
                    [Extent(offset: 1 << 20, length: 1)]] {                           // past capacity
            var w = ByteWriter()
            w.raw(ActiveBlockFilterFile.magic); w.u32(1); w.u32(512); w.u64(1 << 20); w.u64(UInt64(bad.count))
            w.u64(bad.reduce(0) { $0 + $1.length }); w.u32(0); w.u32(CRC32C.checksum(w.bytes[0..<44]))
            for e in bad { w.u64(e.offset); w.u64(e.length) }
            w.u32(CRC32C.checksum(w.bytes[48...])); w.raw(ActiveBlockFilterFile.trailerMagic)
            XCTAssertThrowsError(try ActiveBlockFilterFile.decode(w.bytes, fileName: "f"))
        }
    }
}
