import XCTest
@testable import VZCore

final class BlockMapTests: XCTestCase {
    func testBlockCountAndLastShortBlock() {
        let mib: UInt64 = 1 << 20
        let m = BlockMap(blockSize: UInt32(mib), capacity: 10 * mib + 1000)
        XCTAssertEqual(m.count, 11)
        XCTAssertEqual(m.extent(ofBlock: 0), Extent(offset: 0, length: mib))
        XCTAssertEqual(m.extent(ofBlock: 9), Extent(offset: 9 * mib, length: mib))
        XCTAssertEqual(m.extent(ofBlock: 10), Extent(offset: 10 * mib, length: 1000))
        // The extents tile the disk exactly.
        XCTAssertEqual(ExtentSet((0..<m.count).map { m.extent(ofBlock: $0) }).extents, [Extent(offset: 0, length: 10 * mib + 1000)])
    }

    func testExactMultipleHasNoShortBlock() {
        let m = BlockMap(blockSize: 65536, capacity: 4 * 65536)
        XCTAssertEqual(m.count, 4)
        XCTAssertEqual(m.extent(ofBlock: 3), Extent(offset: 3 * 65536, length: 65536))
    }

    func testBlockCountEdges() {
        XCTAssertEqual(BlockMap.blockCount(capacity: 0, blockSize: 65536), 0)
        XCTAssertEqual(BlockMap.blockCount(capacity: 1, blockSize: 65536), 1)
        XCTAssertEqual(BlockMap.blockCount(capacity: 65536, blockSize: 65536), 1)
        XCTAssertEqual(BlockMap.blockCount(capacity: 65537, blockSize: 65536), 2)
        XCTAssertEqual(BlockMap.blockCount(capacity: 2 << 40, blockSize: 1 << 20), 2 << 20)
        XCTAssertEqual(BlockMap(blockSize: 65536, capacity: 0).count, 0)
    }

    func testFillAndSubscript() {
        var rng = SeededRNG(seed: 11)
        let h = SHA256Digest([UInt8].random(count: 32, using: &rng))
        var m = BlockMap(blockSize: 65536, capacity: 5 * 65536, filledWith: .zero)
        XCTAssertEqual((0..<5).map { m[$0] }, Array(repeating: .zero, count: 5))
        m[2] = .data(h)
        m[4] = .unknown
        XCTAssertEqual(m[2], .data(h))
        XCTAssertEqual(m[2].hash, h)
        XCTAssertEqual(m[4].kind, .unknown)
        XCTAssertEqual(m[0], .zero)
        XCTAssertNotEqual(m, BlockMap(blockSize: 65536, capacity: 5 * 65536, filledWith: .zero))
    }

    func testNonDataEntriesCarryNoHash() {
        let h = SHA256Digest(w0: 1, w1: 2, w2: 3, w3: 4)
        XCTAssertEqual(BlockMap.Entry(kind: .zero, hash: h).hash, .zero)
        XCTAssertEqual(BlockMap.Entry(kind: .unknown, hash: h).hash, .zero)
        XCTAssertEqual(BlockMap.Entry(kind: .data, hash: h).hash, h)
    }

    func testEntryEncoding() throws {
        let bytes = Array(1...32).map(UInt8.init)
        var w = ByteWriter()
        BlockMap.Entry.data(SHA256Digest(bytes)).encode(into: &w)
        BlockMap.Entry.zero.encode(into: &w)
        XCTAssertEqual(w.bytes.count, 2 * BlockMap.Entry.encodedSize)
        XCTAssertEqual(w.bytes[0], 1)
        XCTAssertEqual(Array(w.bytes[1..<33]), bytes, "hash bytes are written in digest order")
        XCTAssertEqual(w.bytes[33], 2)
        var r = ByteReader(w.bytes, context: "t")
        XCTAssertEqual(try BlockMap.Entry.decode(&r, field: "e"), .data(SHA256Digest(bytes)))
        XCTAssertEqual(try BlockMap.Entry.decode(&r, field: "e"), .zero)
        XCTAssertNoThrow(try r.expectEnd())
    }

    func testDigestBytesAndDescription() {
        let bytes = Array(0..<32).map(UInt8.init)
        let d = SHA256Digest(bytes)
        XCTAssertEqual(d.bytes, bytes)
        XCTAssertEqual(d.description, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
        XCTAssertEqual(SHA256Digest.zero.bytes, [UInt8](repeating: 0, count: 32))
    }
}

final class ByteCodingTests: XCTestCase {
    func testLittleEndianFields() throws {
        var w = ByteWriter()
        w.u8(0x01); w.u16(0x0302); w.u32(0x0706_0504); w.u64(0x0F0E_0D0C_0B0A_0908)
        XCTAssertEqual(w.bytes, Array(1...15).map(UInt8.init))
        var r = ByteReader(w.bytes, context: "c")
        XCTAssertEqual(try r.u8("a"), 1)
        XCTAssertEqual(try r.u16("b"), 0x0302)
        XCTAssertEqual(try r.u32("c"), 0x0706_0504)
        XCTAssertEqual(try r.u64("d"), 0x0F0E_0D0C_0B0A_0908)
        XCTAssertEqual(r.remaining, 0)
    }

    func testReaderOnASliceCountsFromTheSliceStart() {
        let bytes: [UInt8] = [9, 9, 9, 1, 0]
        var r = ByteReader(bytes[3...], context: "file.bin", errorKind: .corruptMap)
        XCTAssertEqual(try r.u16("x"), 1)
        assertVZError(.corruptMap, containing: ["file.bin", "field 'y'", "at byte 2", "truncated"]) { try r.u8("y") }
    }

    /// A value rejected after it was read is reported at the offset the field starts at, not at
    /// the byte after it; a field not read yet, at the current offset.
    func testFailNamesTheFieldsOwnOffset() throws {
        var r = ByteReader([1, 2, 3, 4, 5, 6, 7], context: "f.bin", errorKind: .corruptMap)
        _ = try r.u8("a")
        _ = try r.u32("b")
        XCTAssertTrue(r.fail("b", "bad").message.contains("field 'b' at byte 1:"), r.fail("b", "bad").message)
        XCTAssertTrue(r.fail("c", "missing").message.contains("field 'c' at byte 5:"))
        var s = ByteReader([3, 0, 0xFF, 0xFE, 0xFD], context: "f.bin")
        XCTAssertThrowsError(try s.string("name")) { XCTAssertTrue("\($0)".contains("field 'name' at byte 0:"), "\($0)") }
    }

    func testPatchU32() {
        var w = ByteWriter()
        w.u32(0); w.u8(7)
        w.patchU32(at: 0, 0xAABB_CCDD)
        XCTAssertEqual(w.bytes, [0xDD, 0xCC, 0xBB, 0xAA, 7])
    }
}
