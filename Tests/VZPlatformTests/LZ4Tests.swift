import XCTest
import VZCore
@testable import VZPlatform

final class LZ4Tests: XCTestCase {
    private func compress(_ input: [UInt8]) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: LZ4.compressBound(input.count))
        let n = input.withUnsafeBytes { i in out.withUnsafeMutableBytes { LZ4.compress(i, into: $0) } }
        return n.map { Array(out[..<$0]) }
    }

    /// Decompresses `payload` into exactly `expected` bytes, twice: into a buffer pre-filled with
    /// 0xA5 and into one pre-filled with 0x5A, each followed by 64 guard bytes. Checks what the
    /// wrapper promises whatever the payload: the guard bytes are never touched; both runs agree
    /// (both fail, or both succeed); and a success wrote every byte of the block (the wrapper
    /// accepts only LZ4_decompress_safe == output.count), so the two results are equal: a byte the
    /// decompressor left unwritten would still show its pre-fill.
    private func decompress(_ payload: [UInt8], expected: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        var results: [Result<[UInt8], Error>] = []
        for fill: UInt8 in [0xA5, 0x5A] {
            var buf = [UInt8](repeating: fill, count: expected + 64)
            let r = Result<Void, Error> {
                try payload.withUnsafeBytes { p in
                    try buf.withUnsafeMutableBytes { b in
                        try LZ4.decompress(p, into: UnsafeMutableRawBufferPointer(rebasing: b[0..<expected]), context: "block at 42")
                    }
                }
            }
            XCTAssertTrue(buf[expected...].allSatisfy { $0 == fill }, "wrote past the output buffer", file: file, line: line)
            results.append(r.map { Array(buf[..<expected]) })
        }
        switch (results[0], results[1]) {
        case let (.success(a), .success(b)):
            XCTAssertTrue(a == b, "a successful decompression left bytes of the \(expected)-byte block unwritten", file: file, line: line)
            return a
        case let (.failure(e), .failure):
            throw e
        case let (.success, .failure(e)), let (.failure(e), .success):
            XCTFail("the same payload decompressed once and failed once: \(e)", file: file, line: line)
            throw e
        }
    }

    // MARK: the lz4 command-line tool as an oracle

    /// lz4's legacy frame, which the `lz4` tool still reads: magic 0x184C2102, then per block its
    /// compressed size (u32) and the block, no checksums. The tool decodes each block with
    /// LZ4_decompress_safe into an 8 MiB buffer and writes what it decoded to, so a legacy frame
    /// of our blocks puts them through an lz4 decoder that is not our wrapper (the Debian tool is
    /// statically linked, not our liblz4.so).
    private func legacyFrame(_ blocks: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = [0x02, 0x21, 0x4C, 0x18]
        for b in blocks {
            precondition(!b.isEmpty && b.count <= LZ4.compressBound(8 << 20))
            out += (0..<4).map { UInt8(truncatingIfNeeded: b.count >> (8 * $0)) } + b
        }
        return out
    }

    /// What `lz4 -d` makes of `blocks` (all of them, concatenated).
    private func lz4Tool(decompress blocks: [[UInt8]]) throws -> [UInt8] {
        let dir = try makeTempDir("lz4cli")
        try Data(legacyFrame(blocks)).write(to: URL(fileURLWithPath: dir + "/in.lz4"))
        _ = try run("/usr/bin/lz4", ["-d", "-f", "-q", dir + "/in.lz4", dir + "/out"])
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/out")))
    }

    /// The blocks of what `lz4 -l` (legacy frame, 8 MiB blocks) makes of `input`.
    private func lz4Tool(compressLegacy input: [UInt8]) throws -> [[UInt8]] {
        let dir = try makeTempDir("lz4cli")
        try Data(input).write(to: URL(fileURLWithPath: dir + "/in"))
        _ = try run("/usr/bin/lz4", ["-l", "-f", "-q", "-9", dir + "/in", dir + "/out.lz4"])
        let f = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/out.lz4")))
        XCTAssertEqual(Array(f.prefix(4)), [0x02, 0x21, 0x4C, 0x18], "not a legacy frame")
        var blocks: [[UInt8]] = []
        var i = 4
        while i + 4 <= f.count {
            let n = (0..<4).reduce(0) { $0 | Int(f[i + $1]) << (8 * $1) }
            i += 4
            guard i + n <= f.count else { XCTFail("legacy frame truncated"); break }
            blocks.append(Array(f[i..<i + n]))
            i += n
        }
        return blocks
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

    /// Our compressor's output is a standard lz4 block: the lz4 tool decodes it to the input.
    func testLz4ToolDecompressesWhatWeCompress() throws {
        var inputs = [100, 4096, 65536, 1 << 20, 8 << 20].enumerated().map { compressible($1, seed: UInt64(10 + $0)) }
        inputs.append([UInt8](repeating: 0, count: 8 << 20))
        inputs.append(compressible(65536, seed: 9) + randomBytes(65536, seed: 9))  // half incompressible
        let blocks = try inputs.map { try XCTUnwrap(compress($0), "\($0.count) bytes did not compress") }
        let decoded = try lz4Tool(decompress: blocks)
        XCTAssertEqual(decoded.count, inputs.reduce(0) { $0 + $1.count })
        XCTAssertTrue(decoded == inputs.flatMap { $0 }, "lz4 -d gives other bytes than we compressed")
    }

    /// And the other way: the blocks the lz4 tool writes decode with our wrapper.
    func testWeDecompressWhatTheLz4ToolCompresses() throws {
        let input = compressible((8 << 20) + 70_000, seed: 21)  // two blocks: 8 MiB and the rest
        let blocks = try lz4Tool(compressLegacy: input)
        XCTAssertEqual(blocks.count, 2)
        guard blocks.count == 2 else { return }
        XCTAssertTrue(try decompress(blocks[0], expected: 8 << 20) == Array(input[..<(8 << 20)]), "first block")
        XCTAssertTrue(try decompress(blocks[1], expected: 70_000) == Array(input[(8 << 20)...]), "second block")
    }

    /// lz4 blocks carry no checksum: a corrupted byte may decode to other bytes of the right
    /// length. The protocol relies on the SHA-256 that travels with each block (the target
    /// refuses a block whose decompressed bytes hash otherwise, Docs/protocol.md §4). So for every
    /// corruption, either the wrapper fails cleanly (corruptFrame, naming the block), or it fills
    /// the whole block (checked by `decompress`), and then the bytes are the original or their
    /// SHA-256 is not the original's; and the lz4 tool decodes the corrupted block to the same
    /// bytes (a success is liblz4's verdict, not an artefact of the wrapper).
    func testCorruptedPayloadsFailCleanlyOrFillTheBlock() throws {
        let data = compressible(16384, seed: 4)
        let originalHash = SHA256.digest(data)
        let c = try XCTUnwrap(compress(data))
        var rng = SplitMix(seed: 5)
        var failures = 0, silentlyWrong = 0
        var accepted: [(payload: [UInt8], out: [UInt8])] = []
        for i in 0..<c.count {
            for _ in 0..<3 {
                var bad = c
                bad[i] ^= UInt8(truncatingIfNeeded: rng.next() | 1)
                do {
                    let out = try decompress(bad, expected: data.count)
                    if out != data {
                        silentlyWrong += 1
                        XCTAssertNotEqual(SHA256.digest(out), originalHash, "byte \(i): other bytes with the original's SHA-256")
                    }
                    accepted.append((bad, out))
                } catch let e as VZError {
                    XCTAssertEqual(e.kind, .corruptFrame)
                    XCTAssertTrue(e.message.contains("block at 42"), e.message)
                    failures += 1
                }
            }
        }
        XCTAssertGreaterThan(failures, 0, "no corruption was ever detected")
        // That lz4 lets corruptions through is why the block's SHA-256 travels with it.
        XCTAssertGreaterThan(silentlyWrong, 0, "no corruption decoded to other bytes: the SHA-256 check was not exercised")
        XCTAssertTrue(try lz4Tool(decompress: accepted.map { $0.payload }) == accepted.flatMap { $0.out },
                      "the lz4 tool decodes the accepted corrupted blocks differently")
        print("\(c.count * 3) corruptions: \(failures) refused, \(accepted.count) decoded, \(silentlyWrong) of them to other bytes")

        for seed in 0..<500 {
            let garbage = randomBytes(Int(seed % 300) + 1, seed: UInt64(seed) + 1000)
            do {
                _ = try decompress(garbage, expected: 4096)
            } catch let e as VZError {
                XCTAssertEqual(e.kind, .corruptFrame, "garbage \(seed)")
            }
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
