import Foundation
import Glibc
import XCTest
import VZCore
@testable import VZPlatform

final class PosixFileTests: XCTestCase {
    private let mib: UInt64 = 1 << 20

    private func newFile(size: UInt64) throws -> PosixFile {
        let dir = try makeTempDir("vzfile")
        let f = try PosixFile.open("\(dir)/disk.img", flags: O_RDWR | O_CREAT | O_TRUNC, errorKind: .replicaIO)
        try f.truncate(to: size)
        return f
    }

    /// The file system's allocation unit: SEEK_DATA/SEEK_HOLE answer in whole blocks.
    private func blockSize(_ f: PosixFile) -> UInt64 {
        var s = statvfs()
        XCTAssertEqual(fstatvfs(f.fd, &s), 0)
        return UInt64(s.f_bsize)
    }

    func testHolesOfASparseFile() throws {
        let f = try newFile(size: 8 * mib)
        let bs = blockSize(f)
        try XCTSkipIf(bs > 64 << 10, "file system block of \(bs) bytes")
        try f.write(at: 1 * mib, [UInt8](repeating: 1, count: 4096))
        try f.write(at: 5 * mib + 100, [UInt8](repeating: 2, count: 4096))
        try f.sync()
        let secondEnd = ((5 * mib + 100 + 4096 + bs - 1) / bs) * bs
        let expected = ExtentSet([
            Extent(offset: 0, length: mib),
            Extent(offset: mib + max(4096, bs), length: 4 * mib - max(4096, bs)),
            Extent(offset: secondEnd, length: 8 * mib - secondEnd),
        ])
        XCTAssertEqual(try f.holes(below: 8 * mib), expected)
        // A limit inside data, at a hole's start, and inside a hole.
        XCTAssertEqual(try f.holes(below: mib + 2048), ExtentSet([Extent(offset: 0, length: mib)]))
        XCTAssertEqual(try f.holes(below: mib), ExtentSet([Extent(offset: 0, length: mib)]))
        XCTAssertEqual(try f.holes(below: 3 * mib),
                       ExtentSet([Extent(offset: 0, length: mib), Extent(offset: mib + max(4096, bs), length: 2 * mib - max(4096, bs))]))
        XCTAssertEqual(try f.holes(below: 0), ExtentSet())
        XCTAssertEqual(try f.nextData(from: 0), mib)
        XCTAssertEqual(try f.nextHole(from: mib), mib + max(4096, bs))
        XCTAssertNil(try f.nextData(from: secondEnd))
        XCTAssertEqual(try f.size(), 8 * mib)
    }

    func testFullyAllocatedAndFullyEmptyFiles() throws {
        let empty = try newFile(size: 4 * mib)
        XCTAssertEqual(try empty.holes(below: 4 * mib), ExtentSet([Extent(offset: 0, length: 4 * mib)]))
        let full = try newFile(size: 0)
        try full.write(at: 0, randomBytes(Int(2 * mib), seed: 1))
        XCTAssertEqual(try full.holes(below: 2 * mib), ExtentSet())
        // Past the end of file everything reads as a hole.
        XCTAssertEqual(try full.holes(below: 3 * mib), ExtentSet([Extent(offset: 2 * mib, length: mib)]))
    }

    func testPunchHoleMakesSeekDataSkipTheRegion() throws {
        let f = try newFile(size: 0)
        let data = randomBytes(Int(3 * mib), seed: 2)
        try f.write(at: 0, data)
        try f.sync()
        XCTAssertEqual(try f.holes(below: 3 * mib), ExtentSet())
        try f.punchHole(Extent(offset: mib, length: mib))
        XCTAssertEqual(try f.size(), 3 * mib, "punching must keep the size")
        XCTAssertEqual(try f.nextHole(from: 0), mib)
        XCTAssertEqual(try f.nextData(from: mib), 2 * mib)
        XCTAssertEqual(try f.holes(below: 3 * mib), ExtentSet([Extent(offset: mib, length: mib)]))
        var back = [UInt8](repeating: 0xFF, count: Int(3 * mib))
        try back.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
        XCTAssertTrue(back[Int(mib)..<Int(2 * mib)].allSatisfy { $0 == 0 }, "the punched region does not read as zeros")
        XCTAssertEqual(back[..<Int(mib)], data[..<Int(mib)])
        XCTAssertEqual(back[Int(2 * mib)...], data[Int(2 * mib)...])
    }

    func testReadPastEndOfFileNamesTheOffset() throws {
        let f = try newFile(size: 1000)
        var buf = [UInt8](repeating: 0, count: 100)
        XCTAssertNoThrow(try buf.withUnsafeMutableBytes { try f.read(at: 900, into: $0) })
        assertVZError(.replicaIO, ["disk.img", "offset 1000", "50 bytes short"]) {
            try buf.withUnsafeMutableBytes { try f.read(at: 950, into: $0) }
        }
    }

    func testWriteReadRoundTripAtLargeOffset() throws {
        let f = try newFile(size: 0)
        let data = randomBytes(10_000, seed: 3)
        let off: UInt64 = 1 << 40  // sparse: 1 TiB in
        try f.write(at: off, data)
        XCTAssertEqual(try f.size(), off + 10_000)
        var back = [UInt8](repeating: 0, count: data.count)
        try back.withUnsafeMutableBytes { try f.read(at: off, into: $0) }
        XCTAssertEqual(back, data)
        XCTAssertEqual(try f.nextData(from: 0), off)
    }

    func testOpenMissingFileNamesPathAndErrno() {
        assertVZError(.sourceIO, ["/nonexistent/disk.img", "errno \(ENOENT)"]) {
            try PosixFile.open("/nonexistent/disk.img", flags: O_RDONLY, errorKind: .sourceIO)
        }
    }
}
