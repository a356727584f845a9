import Foundation
import XCTest
@testable import VZSource
import VZCore
import VZPlatform
import VZTestSupport

/// A disk in memory that counts its reads: the encoder is pure apart from reading.
final class MemoryBlockReader: BlockReader {
    let bytes: [UInt8]
    private let lock = NSLock()
    private var readOffsets: [UInt64] = []
    var capacity: UInt64 { UInt64(bytes.count) }
    var displayName: String { "memory" }

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var reads: [UInt64] { lock.lock(); defer { lock.unlock() }; return readOffsets }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        lock.lock(); readOffsets.append(offset); lock.unlock()
        let start = Int(offset)
        precondition(start + buffer.count <= bytes.count, "read past the capacity")
        bytes[start..<start + buffer.count].withUnsafeBytes { buffer.copyMemory(from: $0) }
    }
}

/// SHA-256 from coreutils, not from our OpenSSL wrapper.
func oracleSHA256(_ bytes: [UInt8]) throws -> [UInt8] {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("vzsource-sha-\(UUID().uuidString)")
    try Data(bytes).write(to: url)
    defer { try? FileManager.default.removeItem(at: url) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/sha256sum")
    p.arguments = [url.path]
    let out = Pipe()
    p.standardOutput = out
    try p.run()
    let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    guard p.terminationStatus == 0, let hex = text.split(separator: " ").first, hex.count == 64 else {
        throw VZError(.internal, "sha256sum failed: \(text)")
    }
    let chars = Array(hex)
    return stride(from: 0, to: 64, by: 2).map { UInt8(String(chars[$0...$0 + 1]), radix: 16)! }
}

final class BlockEncoderTests: XCTestCase {
    // Four whole blocks and a short fifth one:
    // 0 random data, 1 zeros, 2 compressible data, 3 zeros (a hole the reader knows), 4 random (1000 bytes).
    static let blockSize: UInt32 = 4096
    static let capacity = 4 * 4096 + 1000
    private var disk: [UInt8] = []
    private var reader: MemoryBlockReader!
    private let hole = ExtentSet([Extent(offset: 3 * 4096, length: 4096)])

    override func setUp() {
        var rng = SplitMix64(seed: 7)
        let bs = Int(Self.blockSize)
        disk = (0..<bs).map { _ in UInt8.random(in: 0...255, using: &rng) }
        disk += [UInt8](repeating: 0, count: bs)
        disk += (0..<bs).map { UInt8($0 % 7 + 1) }
        disk += [UInt8](repeating: 0, count: bs)
        disk += (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        XCTAssertEqual(disk.count, Self.capacity)
        reader = MemoryBlockReader(disk)
    }

    private func bytes(of block: Int) -> [UInt8] {
        let start = block * Int(Self.blockSize)
        return Array(disk[start..<min(start + Int(Self.blockSize), disk.count)])
    }

    private func plan(_ mode: ReplicationMode, whitespace: Bool = true) -> PassPlan {
        PassPlan(capacity: UInt64(Self.capacity), blockSize: Self.blockSize, mode: mode, whitespace: whitespace, knownZero: hole)
    }

    /// Encodes every block of the plan, as the pipeline would (in order here).
    private func encode(_ plan: PassPlan, map: BlockMap) throws -> [BlockVerdict] {
        let encoder = BlockEncoder(reader: reader, map: map, plan: plan)
        return try plan.blocks.map { try encoder.encode($0) }
    }

    private func emptyMap(_ entry: BlockMap.Entry = .unknown) -> BlockMap {
        BlockMap(blockSize: Self.blockSize, capacity: UInt64(Self.capacity), filledWith: entry)
    }

    private func extent(_ block: Int) -> Extent {
        let off = UInt64(block) * UInt64(Self.blockSize)
        return Extent(offset: off, length: min(UInt64(Self.blockSize), UInt64(Self.capacity) - off))
    }

    private enum Kind: Equatable { case unchanged(Extent, UInt64), zero(Extent, UInt64), data(Extent, UInt64) }
    private func kind(_ v: BlockVerdict) -> Kind {
        switch v {
        case let .unchanged(e, s): return .unchanged(e, s)
        case let .zero(e, s): return .zero(e, s)
        case let .data(_, e, _, s): return .data(e, s)
        }
    }

    /// Decodes a data verdict's frame the way the target does and checks it against the block.
    private func assertFrame(_ v: BlockVerdict, isBlock block: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        guard case let .data(frame, verdictExtent, payloadBytes, _) = v else {
            return XCTFail("block \(block): expected data, got \(kind(v))", file: file, line: line)
        }
        var decoder = FrameDecoder()
        decoder.append(frame)
        let f = try XCTUnwrap(try decoder.nextFrame(), "block \(block): no whole frame", file: file, line: line)
        XCTAssertEqual(decoder.bufferedBytes, 0, "block \(block): bytes after the frame", file: file, line: line)
        guard case let .blockData(b) = try Message.decode(f) else {
            return XCTFail("block \(block): not a blockData frame", file: file, line: line)
        }
        let expected = bytes(of: block)
        XCTAssertEqual(b.offset, extent(block).offset, file: file, line: line)
        XCTAssertEqual(verdictExtent, extent(block), file: file, line: line)
        XCTAssertEqual(Int(b.rawLength), expected.count, file: file, line: line)
        XCTAssertEqual(b.payload.count, payloadBytes, file: file, line: line)
        XCTAssertEqual(b.sha256, try oracleSHA256(expected), "block \(block): SHA-256 differs from sha256sum's", file: file, line: line)
        var raw = [UInt8](repeating: 0, count: Int(b.rawLength))
        switch b.encoding {
        case .raw: raw = Array(b.payload)
        case .lz4:
            try Array(b.payload).withUnsafeBytes { input in
                try raw.withUnsafeMutableBytes { try LZ4.decompress(input, into: $0, context: "block \(block)") }
            }
        }
        XCTAssertEqual(raw, expected, "block \(block): payload does not decode to the block", file: file, line: line)
    }

    func testDifferentialWithAnUnknownMapSendsEverything() throws {
        let v = try encode(plan(.differential), map: emptyMap())
        XCTAssertEqual(v.map(kind), [.data(extent(0), 4096), .zero(extent(1), 4096), .data(extent(2), 4096),
                                     .zero(extent(3), 0), .data(extent(4), 1000)])
        for b in [0, 2, 4] { try assertFrame(v[b], isBlock: b) }
        XCTAssertEqual(reader.reads.sorted(), [0, 4096, 8192, 16384], "the known-zero block is never read")
        // Random data does not compress, a repeated pattern does.
        guard case let .data(f0, _, p0, _) = v[0], case let .data(f2, _, p2, _) = v[2] else { return XCTFail() }
        XCTAssertEqual(f0[Frame.headerSize + 12], Message.BlockData.Encoding.raw.rawValue)
        XCTAssertEqual(p0, 4096)
        XCTAssertEqual(f2[Frame.headerSize + 12], Message.BlockData.Encoding.lz4.rawValue)
        XCTAssertLessThan(p2, 4096)
    }

    /// The map already has the content: data with the same hash, zero for zero blocks (read or known).
    func testDifferentialSkipsWhatTheMapAlreadyHas() throws {
        var map = emptyMap()
        map[0] = .data(SHA256Digest(try oracleSHA256(bytes(of: 0))))
        map[1] = .zero
        map[2] = .data(SHA256Digest(try oracleSHA256(bytes(of: 0))))  // another block's hash: changed
        map[3] = .zero
        map[4] = .zero  // the map says zero, the block is not: changed
        let v = try encode(plan(.differential), map: map)
        XCTAssertEqual(v.map(kind), [.unchanged(extent(0), 4096), .unchanged(extent(1), 4096), .data(extent(2), 4096),
                                     .unchanged(extent(3), 0), .data(extent(4), 1000)])
        try assertFrame(v[2], isBlock: 2)
        try assertFrame(v[4], isBlock: 4)
    }

    /// A known-zero block the map has as data must be zeroed on the target.
    func testKnownZeroBlockOverDataIsAZeroExtent() throws {
        var map = emptyMap()
        map[3] = .data(SHA256Digest(try oracleSHA256(bytes(of: 0))))
        map[1] = .data(SHA256Digest(try oracleSHA256(bytes(of: 1))))  // the map has the zeros as data
        let v = try encode(plan(.differential), map: map)
        XCTAssertEqual(kind(v[3]), .zero(extent(3), 0))
        XCTAssertEqual(kind(v[1]), .zero(extent(1), 4096), "a zero block goes as a zero extent, even when its hash matches")
    }

    /// Full mode ignores the map: matching hashes and zero entries do not make a block unchanged.
    func testFullModeIgnoresTheMap() throws {
        var map = emptyMap(.zero)
        map[0] = .data(SHA256Digest(try oracleSHA256(bytes(of: 0))))
        map[2] = .data(SHA256Digest(try oracleSHA256(bytes(of: 2))))
        let v = try encode(plan(.full), map: map)
        XCTAssertEqual(v.map(kind), [.data(extent(0), 4096), .zero(extent(1), 4096), .data(extent(2), 4096),
                                     .zero(extent(3), 0), .data(extent(4), 1000)])
        for b in [0, 2, 4] { try assertFrame(v[b], isBlock: b) }
    }

    /// Without white-space detection zero blocks are read, hashed and sent as data, even when the
    /// reader knows them as holes and the map says zero.
    func testWhitespaceOffSendsZerosAsData() throws {
        for mode in ReplicationMode.allCases {
            let before = reader.reads.count
            let v = try encode(plan(mode, whitespace: false), map: emptyMap(.zero))
            XCTAssertEqual(v.map(kind), (0..<5).map { .data(extent($0), extent($0).length) }, "\(mode)")
            for b in 0..<5 { try assertFrame(v[b], isBlock: b) }
            XCTAssertEqual(reader.reads.count - before, 5, "\(mode): every block is read")
        }
    }

    /// The known-zero tag comes from the plan; the encoder does not look at extents itself.
    func testEncoderFollowsThePlansClassification() throws {
        let encoder = BlockEncoder(reader: reader, map: emptyMap(), plan: plan(.differential))
        let v = try encoder.encode(PassPlan.Block(index: 0, extent: extent(0), knownZero: true))
        XCTAssertEqual(kind(v), .zero(extent(0), 0))
        XCTAssertEqual(reader.reads, [])
    }
}
