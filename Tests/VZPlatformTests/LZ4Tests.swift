import XCTest
import VZCore
@testable import VZPlatform

final class LZ4Tests: XCTestCase {
    private func compress(_ input: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: LZ4.compressBound(input.count))
        let n = input.withUnsafeBytes { i in out.withUnsafeMutableBytes { LZ4.compress(i, into: $0) } }
        return n.map { Array(out[..<$0]) }
    }

    /// Decompresses into `expected` bytes followed by 64 guard bytes, and checks that the guard
    /// bytes were not touched whatever happened.
    private func decompress(_ payload: [UInt8], expected: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0xA5, count: expected + 64)
        defer { XCTAssertTrue(buf[expected...].allSatisfy { $0 == 0xA5 }, "wrote past the output buffer", file: file, line: line) }
        try payload.withUnsafeBytes { p in
            try buf.withUnsafeMutableBytes { b in
                try LZ4.decompress(p, into: UnsafeMutableRawBufferPointer(rebasing: b[0..<expected]), context: "block at 42")
            }
        }
        return Array(buf[..<expected])
    }

    private func compressible(_ n: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix(seed: seed)
        let words = ["alpha ", "beta ", "gamma ", "delta ", "\n", "2026-11-25 ", "GET /index.html 200 "].map { Array($0.utf8) }
        var out: [UInt8] = []
        while out.count < n { out += words[Int(rng.next() % UInt64(words.count))] }
        return Array(out[..<n])
    }

    func testRoundTrip() throws {
        for (i, n) in [100, 4096, 65536, 1 << 20].enumerated() {
            let data = compressible(n, seed: UInt64(i))
            let c = try XCTUnwrap(compress(data), "size \(n) did not compress")
            XCTAssertLessThan(c.count, data.count)
            XCTAssertEqual(try decompress(c, expected: n), data)
        }
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        let cz = try XCTUnwrap(compress(zeros))
        XCTAssertLessThan(cz.count, 5000)
        XCTAssertEqual(try decompress(cz, expected: zeros.count), zeros)
    }

    func testIncompressibleReturnsNil() {
        XCTAssertNil(compress(randomBytes(65536, seed: 3)))
        XCTAssertNil(compress([1, 2, 3]))
    }

    func testWrongExpectedSizeFails() throws {
        let data = compressible(65536, seed: 1)
        let c = try XCTUnwrap(compress(data))
        assertVZError(.corruptFrame, ["block at 42", "65536", "65537"]) { try decompress(c, expected: 65537) }
        assertVZError(.corruptFrame, ["block at 42"]) { try decompress(c, expected: 65535) }
        assertVZError(.corruptFrame, ["block at 42"]) { try decompress(c, expected: 1024) }
        assertVZError(.corruptFrame, ["block at 42"]) { try decompress(c, expected: 0) }
    }

    func testEmptyAndTruncatedPayloadsFail() throws {
        let data = compressible(65536, seed: 2)
        let c = try XCTUnwrap(compress(data))
        assertVZError(.corruptFrame, ["block at 42"]) { try decompress([], expected: 65536) }
        for n in stride(from: 1, to: c.count, by: max(1, c.count / 200)) {
            assertVZError(.corruptFrame, ["block at 42"], "truncated to \(n)") { try decompress(Array(c[..<n]), expected: 65536) }
        }
    }

    /// lz4 blocks carry no checksum: a corrupted byte may decode to other bytes of the right
    /// length (the SHA-256 of the block catches that). What must never happen is a crash, a
    /// write past the buffer, or a "success" of the wrong length.
    func testCorruptedPayloadsFailCleanlyOrKeepTheSize() throws {
        let data = compressible(16384, seed: 4)
        let c = try XCTUnwrap(compress(data))
        var rng = SplitMix(seed: 5)
        var failures = 0
        for i in 0..<c.count {
            for _ in 0..<3 {
                var bad = c
                bad[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                do {
                    let out = try decompress(bad, expected: data.count)
                    XCTAssertEqual(out.count, data.count)
                } catch let e as VZError {
                    XCTAssertEqual(e.kind, .corruptFrame)
                    failures += 1
                }
            }
        }
        XCTAssertGreaterThan(failures, 0, "no corruption was ever detected")
        for seed in 0..<500 {
            let garbage = randomBytes(Int(seed % 300) + 1, seed: UInt64(seed) + 1000)
            _ = try? decompress(garbage, expected: 4096)
        }
    }

    /// A hand-made block that expands about 250:1: one literal, then a match of offset 1 whose
    /// length is extended by N bytes of 255, then the closing 5 literals.
    private func bomb(extensionBytes n: Int) -> (block: [UInt8], size: Int) {
        var b: [UInt8] = [0x1F, UInt8(ascii: "A"), 0x01, 0x00]
        b += [UInt8](repeating: 0xFF, count: n)
        b.append(0x00)
        b += [0x50] + Array("ZZZZZ".utf8)
        return (b, 1 + (15 + 4 + 255 * n) + 5)
    }

    func testExpandingInputIsBoundedByTheExpectedSize() throws {
        let (block, realSize) = bomb(extensionBytes: 4000)
        XCTAssertGreaterThan(realSize, 1_000_000)
        XCTAssertLessThan(block.count, 4100)
        // The block is valid: at its true size it decodes.
        let out = try decompress(block, expected: realSize)
        XCTAssertEqual(out.first, UInt8(ascii: "A"))
        XCTAssertEqual(Array(out.suffix(5)), Array("ZZZZZ".utf8))
        // Asked for a 64 KiB block, it fails without writing past 64 KiB.
        assertVZError(.corruptFrame, ["block at 42", "malformed"]) { try decompress(block, expected: 65536) }
        assertVZError(.corruptFrame, ["block at 42"]) { try decompress(block, expected: realSize - 1) }
    }
}
