import XCTest
@testable import VZCore

final class CRC32CTests: XCTestCase {
    /// Check value of the CRC-32C catalogue, and the iSCSI test vectors of RFC 3720 §B.4.
    func testKnownVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map(UInt8.init)), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).reversed().map(UInt8.init)), 0x113F_DB5C)
    }

    func testSeedChainsAcrossPieces() {
        var rng = SeededRNG(seed: 21)
        let data = [UInt8].random(count: 1000, using: &rng)
        let whole = CRC32C.checksum(data)
        for cut in [0, 1, 17, 500, 999, 1000] {
            XCTAssertEqual(CRC32C.checksum(data[cut...], seed: CRC32C.checksum(data[..<cut])), whole, "cut \(cut)")
        }
    }

    func testNonContiguousCollectionMatchesArray() {
        let data = Array("The quick brown fox".utf8)
        XCTAssertEqual(CRC32C.checksum(data.reversed().reversed()), CRC32C.checksum(data))
        XCTAssertEqual(CRC32C.checksum(data.lazy.map { $0 }), CRC32C.checksum(data))
    }

    func testEveryBitFlipChangesTheChecksum() {
        var rng = SeededRNG(seed: 22)
        let data = [UInt8].random(count: 64, using: &rng)
        let base = CRC32C.checksum(data)
        for i in 0..<data.count * 8 {
            var d = data
            d[i / 8] ^= 1 << (i % 8)
            XCTAssertNotEqual(CRC32C.checksum(d), base, "bit \(i)")
        }
    }
}

final class ZeroDetectorTests: XCTestCase {
    private func isZero(_ b: ArraySlice<UInt8>) -> Bool { b.withUnsafeBytes { ZeroDetector.isZero($0) } }

    func testAllLengthsAndPositions() {
        for len in 0...100 {
            // Guard bytes before and after, and every start alignment: the detector must look at
            // exactly the bytes it is given.
            for align in 0..<8 {
                var buf = [UInt8](repeating: 0xEE, count: align + len + 8)
                for i in align..<align + len { buf[i] = 0 }
                let range = align..<align + len
                XCTAssertTrue(isZero(buf[range]), "len \(len) align \(align)")
                for pos in 0..<len {
                    for v: UInt8 in [0x01, 0x80] {
                        buf[align + pos] = v
                        XCTAssertFalse(isZero(buf[range]), "len \(len) align \(align) byte \(pos) = \(v)")
                        buf[align + pos] = 0
                    }
                }
            }
        }
    }

    func testEmptyAndNilBuffer() {
        XCTAssertTrue(ZeroDetector.isZero(UnsafeRawBufferPointer(start: nil, count: 0)))
        XCTAssertTrue([UInt8]().withUnsafeBytes { ZeroDetector.isZero($0) })
    }

    func testLargeBlock() {
        var block = [UInt8](repeating: 0, count: 1 << 20)
        XCTAssertTrue(block.withUnsafeBytes { ZeroDetector.isZero($0) })
        block[(1 << 20) - 1] = 1
        XCTAssertFalse(block.withUnsafeBytes { ZeroDetector.isZero($0) })
    }
}
