import XCTest
@testable import VZCore

/// One frame per message type, its bytes written by hand from Docs/protocol.md (§2 frame header,
/// §3 payloads, little-endian), not produced by our encoder: the encoder must produce exactly
/// these bytes and the decoder must read them back as the expected value. A change to the wire
/// format fails here even when encoder and decoder change together.
///
/// Frame header (§2): magic u16 0x5A56 (bytes 56 5A, "VZ"), type u8, flags u8 = 0, length u32.
/// Strings: u16 length + UTF-8 bytes.
final class GoldenMessageTests: XCTestCase {
    /// SHA-256("abc"), the FIPS 180-2 example, in digest order (ba7816bf ... f20015ad).
    private let sha256abc: [UInt8] = [
        0xBA, 0x78, 0x16, 0xBF, 0x8F, 0x01, 0xCF, 0xEA, 0x41, 0x41, 0x40, 0xDE, 0x5D, 0xAE, 0x22, 0x23,
        0xB0, 0x03, 0x61, 0xA3, 0x96, 0x17, 0x7A, 0x9C, 0xB4, 0x10, 0xFF, 0x61, 0xF2, 0x00, 0x15, 0xAD,
    ]
    /// SHA-256 of 64 bytes of "a" (`sha256sum`: ffe054fe...154668eb), the block `lz4Of64a` holds.
    private let sha256of64a: [UInt8] = [
        0xFF, 0xE0, 0x54, 0xFE, 0x7A, 0xE0, 0xCB, 0x6D, 0xC6, 0x5C, 0x3A, 0xF9, 0xB6, 0x1D, 0x52, 0x09,
        0xF4, 0x39, 0x85, 0x1D, 0xB4, 0x3D, 0x0B, 0xA5, 0x99, 0x73, 0x37, 0xDF, 0x15, 0x46, 0x68, 0xEB,
    ]
    /// An lz4 block (written by hand; `lz4 -d` of it in a legacy frame gives 64 x "a"): token 0x1F
    /// (1 literal, match length 15+), "a", match offset 1, match length extension 39 (4+15+39 = 58
    /// bytes), then token 0x50 with the closing 5 literals.
    private let lz4Of64a: [UInt8] = [0x1F, 0x61, 0x01, 0x00, 0x27, 0x50, 0x61, 0x61, 0x61, 0x61, 0x61]

    private let zeroHash = [UInt8](repeating: 0, count: 32)

    /// `encodedFrame()` equals `golden`, and `golden` decodes to `message`, also when it arrives
    /// split in two at any offset.
    private func check(_ message: Message, _ golden: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws {
        // The hand-written bytes must at least agree with themselves: the header's length field
        // is the number of payload bytes written after it.
        XCTAssertGreaterThanOrEqual(golden.count, 8, file: file, line: line)
        let declared = Int(golden[4]) | Int(golden[5]) << 8 | Int(golden[6]) << 16 | Int(golden[7]) << 24
        XCTAssertEqual(declared, golden.count - 8, "golden bytes of \(message.type): length field disagrees with the payload written", file: file, line: line)

        let encoded = message.encodedFrame()
        XCTAssertEqual(hex(encoded), hex(golden), "encoder output differs from the documented bytes", file: file, line: line)

        for cut in 0...golden.count {
            var d = FrameDecoder()
            d.append(Array(golden[..<cut]))
            var frame = try d.nextFrame()
            if frame == nil {
                d.append(Array(golden[cut...]))
                frame = try d.nextFrame()
            } else {
                XCTAssertEqual(cut, golden.count, "a frame before all of it arrived", file: file, line: line)
            }
            let f = try XCTUnwrap(frame, "no frame from the golden bytes split at \(cut)", file: file, line: line)
            XCTAssertEqual(d.bufferedBytes, 0, "split at \(cut)", file: file, line: line)
            XCTAssertEqual(f.type, golden[2], file: file, line: line)
            XCTAssertEqual(try Message.decode(f, frameNumber: 1), message, "split at \(cut)", file: file, line: line)
        }
    }

    private func hex(_ b: [UInt8]) -> String {
        stride(from: 0, to: b.count, by: 16).map { row in
            b[row..<min(row + 16, b.count)].map { String(format2: $0) }.joined(separator: " ")
        }.joined(separator: "\n")
    }

    func testHello() throws {
        try check(.hello(job: "vm1", sourceVersion: "0.1.0"), [
            0x56, 0x5A,                    // magic
            0x01,                          // type 1 hello
            0x00,                          // flags
            0x0C, 0x00, 0x00, 0x00,        // length 12
            0x03, 0x00,                    // job.length 3
            0x76, 0x6D, 0x31,              // job "vm1"
            0x05, 0x00,                    // sourceVersion.length 5
            0x30, 0x2E, 0x31, 0x2E, 0x30,  // sourceVersion "0.1.0"
        ])
    }

    func testHelloAck() throws {
        try check(.helloAck(targetVersion: "0.2"), [
            0x56, 0x5A,              // magic
            0x02,                    // type 2 helloAck
            0x00,                    // flags
            0x05, 0x00, 0x00, 0x00,  // length 5
            0x03, 0x00,              // targetVersion.length 3
            0x30, 0x2E, 0x32,        // targetVersion "0.2"
        ])
    }

    func testOpenDisk() throws {
        try check(.openDisk(.init(disk: "d0", capacity: 0x0102_0304_0506_0708, blockSize: 1 << 20, mode: .full)), [
            0x56, 0x5A,                                      // magic
            0x03,                                            // type 3 openDisk
            0x00,                                            // flags
            0x11, 0x00, 0x00, 0x00,                          // length 17
            0x02, 0x00,                                      // disk.length 2
            0x64, 0x30,                                      // disk "d0"
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // capacity u64 0x0102030405060708
            0x00, 0x00, 0x10, 0x00,                          // blockSize u32 1 MiB
            0x01,                                            // mode 1 full
        ])
        try check(.openDisk(.init(disk: "d0", capacity: 10 << 30, blockSize: 65536, mode: .differential)), [
            0x56, 0x5A,                                      // magic
            0x03,                                            // type 3 openDisk
            0x00,                                            // flags
            0x11, 0x00, 0x00, 0x00,                          // length 17
            0x02, 0x00,                                      // disk.length 2
            0x64, 0x30,                                      // disk "d0"
            0x00, 0x00, 0x00, 0x80, 0x02, 0x00, 0x00, 0x00,  // capacity u64 10 GiB = 0x2_8000_0000
            0x00, 0x00, 0x01, 0x00,                          // blockSize u32 64 KiB
            0x00,                                            // mode 0 differential
        ])
    }

    func testDiskState() throws {
        try check(.diskState(.init(mapStatus: .rebuilt, generation: 7, entryCount: 0x1_0000_0003, note: "why")), [
            0x56, 0x5A,                                      // magic
            0x04,                                            // type 4 diskState
            0x00,                                            // flags
            0x16, 0x00, 0x00, 0x00,                          // length 22
            0x02,                                            // mapStatus 2 rebuilt
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // generation u64 7
            0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // entryCount u64 0x1_0000_0003
            0x03, 0x00,                                      // note.length 3
            0x77, 0x68, 0x79,                                // note "why"
        ])
        try check(.diskState(.init(mapStatus: .valid, generation: 1, entryCount: 16)), [
            0x56, 0x5A,                                      // magic
            0x04,                                            // type 4 diskState
            0x00,                                            // flags
            0x13, 0x00, 0x00, 0x00,                          // length 19
            0x01,                                            // mapStatus 1 valid
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // generation u64 1
            0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // entryCount u64 16
            0x00, 0x00,                                      // note.length 0 (empty)
        ])
        try check(.diskState(.init(mapStatus: .created, generation: 0, entryCount: 1)), [
            0x56, 0x5A,                                      // magic
            0x04,                                            // type 4 diskState
            0x00,                                            // flags
            0x13, 0x00, 0x00, 0x00,                          // length 19
            0x00,                                            // mapStatus 0 created
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // generation u64 0
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // entryCount u64 1
            0x00, 0x00,                                      // note.length 0 (empty)
        ])
    }

    func testMapChunk() throws {
        let golden: [UInt8] = [
            0x56, 0x5A,                                      // magic
            0x05,                                            // type 5 mapChunk
            0x00,                                            // flags
            0x6F, 0x00, 0x00, 0x00,                          // length 111 = 12 + 3 x 33
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // firstIndex u64 4096
            0x03, 0x00, 0x00, 0x00,                          // count u32 3
            0x02,                                            // entries[0].kind 2 zero
        ] + zeroHash + [                                     // entries[0].sha256: 32 zero bytes
            0x00,                                            // entries[1].kind 0 unknown
        ] + zeroHash + [                                     // entries[1].sha256: 32 zero bytes
            0x01,                                            // entries[2].kind 1 data
        ] + sha256abc                                        // entries[2].sha256, digest order
        try check(.mapChunk(firstIndex: 4096, entries: [.zero, .unknown, .data(SHA256Digest(sha256abc))]), golden)
        try check(.mapChunk(firstIndex: 0, entries: []), [
            0x56, 0x5A,                                      // magic
            0x05,                                            // type 5 mapChunk
            0x00,                                            // flags
            0x0C, 0x00, 0x00, 0x00,                          // length 12
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // firstIndex u64 0
            0x00, 0x00, 0x00, 0x00,                          // count u32 0
        ])
    }

    func testBlockDataRaw() throws {
        let golden: [UInt8] = [
            0x56, 0x5A,                                      // magic
            0x06,                                            // type 6 blockData
            0x00,                                            // flags
            0x30, 0x00, 0x00, 0x00,                          // length 48 = 45 fixed + 3 payload
            0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // offset u64 65536
            0x03, 0x00, 0x00, 0x00,                          // rawLength u32 3
            0x00,                                            // encoding 0 raw
        ] + sha256abc + [                                    // sha256 of the raw data "abc"
            0x61, 0x62, 0x63,                                // payload "abc"
        ]
        try check(.blockData(.init(offset: 65536, rawLength: 3, encoding: .raw, sha256: sha256abc, payload: Array("abc".utf8))), golden)
    }

    func testBlockDataLZ4() throws {
        let golden: [UInt8] = [
            0x56, 0x5A,                                      // magic
            0x06,                                            // type 6 blockData
            0x00,                                            // flags
            0x38, 0x00, 0x00, 0x00,                          // length 56 = 45 fixed + 11 payload
            0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // offset u64 4 GiB = 0x1_0000_0000
            0x40, 0x00, 0x00, 0x00,                          // rawLength u32 64 (decompressed size)
            0x01,                                            // encoding 1 lz4
        ] + sha256of64a + [                                  // sha256 of the raw (decompressed) data
            0x1F, 0x61, 0x01, 0x00, 0x27, 0x50,              // payload: the lz4 block (see lz4Of64a)
            0x61, 0x61, 0x61, 0x61, 0x61,
        ]
        XCTAssertEqual(Array(golden[(8 + 45)...]), lz4Of64a)
        try check(.blockData(.init(offset: 1 << 32, rawLength: 64, encoding: .lz4, sha256: sha256of64a, payload: lz4Of64a)), golden)
    }

    func testZeroExtent() throws {
        try check(.zeroExtent(Extent(offset: 0x2_0000, length: 1 << 32)), [
            0x56, 0x5A,                                      // magic
            0x07,                                            // type 7 zeroExtent
            0x00,                                            // flags
            0x10, 0x00, 0x00, 0x00,                          // length 16
            0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,  // offset u64 0x20000 (128 KiB)
            0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,  // length u64 4 GiB
        ])
    }

    func testCommitDisk() throws {
        try check(.commitDisk(scannedBytes: 0x0102_0304_0506_0708), [
            0x56, 0x5A,                                      // magic
            0x08,                                            // type 8 commitDisk
            0x00,                                            // flags
            0x08, 0x00, 0x00, 0x00,                          // length 8
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // scannedBytes u64 0x0102030405060708
        ])
    }

    func testDiskCommitted() throws {
        try check(.diskCommitted(.init(generation: 2, changedBytes: 0x3_0000, zeroBytes: 0xFFFF_FFFF_FFFF_FFFE)), [
            0x56, 0x5A,                                      // magic
            0x09,                                            // type 9 diskCommitted
            0x00,                                            // flags
            0x18, 0x00, 0x00, 0x00,                          // length 24
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // generation u64 2
            0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,  // changedBytes u64 0x30000 (192 KiB)
            0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,  // zeroBytes u64 2^64 - 2
        ])
    }

    func testBye() throws {
        try check(.bye, [
            0x56, 0x5A,              // magic
            0x0A,                    // type 10 bye
            0x00,                    // flags
            0x00, 0x00, 0x00, 0x00,  // length 0 (empty payload)
        ])
    }

    func testError() throws {
        try check(.error(kind: "noSpace", message: "full €"), [
            0x56, 0x5A,                                      // magic
            0x0B,                                            // type 11 error
            0x00,                                            // flags
            0x13, 0x00, 0x00, 0x00,                          // length 19
            0x07, 0x00,                                      // kind.length 7
            0x6E, 0x6F, 0x53, 0x70, 0x61, 0x63, 0x65,        // kind "noSpace"
            0x08, 0x00,                                      // message.length 8 (bytes, not characters)
            0x66, 0x75, 0x6C, 0x6C, 0x20,                    // message "full "
            0xE2, 0x82, 0xAC,                                // message "€" (UTF-8)
        ])
    }

    /// §3: the message is at most 2000 bytes of UTF-8, cut at a character boundary: 1000 x "é"
    /// (2 bytes each) is 2000 bytes and goes whole; one more "é" is cut, not split in half.
    func testErrorMessageLimitOnTheWire() throws {
        let exact = String(repeating: "é", count: 1000)
        let header: [UInt8] = [
            0x56, 0x5A,                                            // magic
            0x0B,                                                  // type 11 error
            0x00,                                                  // flags
            0xDD, 0x07, 0x00, 0x00,                                // length 2013 = 2 + 9 + 2 + 2000
            0x09, 0x00,                                            // kind.length 9
            0x72, 0x65, 0x70, 0x6C, 0x69, 0x63, 0x61, 0x49, 0x4F,  // kind "replicaIO"
            0xD0, 0x07,                                            // message.length 2000
        ]
        let body: [UInt8] = (0..<2000).map { $0 % 2 == 0 ? 0xC3 : 0xA9 }  // 1000 x "é" = C3 A9
        try check(.error(kind: "replicaIO", message: exact), header + body)
        XCTAssertEqual(Message.error(kind: "replicaIO", message: exact + "é").encodedFrame(), header + body)
        XCTAssertEqual(Message.error(kind: "replicaIO", message: exact + "x").encodedFrame(), header + body)
    }

    func testKeepalive() throws {
        try check(.keepalive, [
            0x56, 0x5A,              // magic
            0x0C,                    // type 12 keepalive
            0x00,                    // flags
            0x00, 0x00, 0x00, 0x00,  // length 0 (empty payload)
        ])
    }

    func testProgress() throws {
        try check(.progress(0x0102_0304_0506_0708), [
            0x56, 0x5A,              // magic
            0x0D,                    // type 13 progress
            0x00,                    // flags
            0x08, 0x00, 0x00, 0x00,  // length 8
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,  // u64 count, little-endian
        ])
    }

    /// Docs/protocol.md §4.2, the diskSet example.
    func testDiskSet() throws {
        try check(.diskSet([.init(name: "disk0", capacity: 10_737_418_240), .init(name: "disk1", capacity: 1_048_576)]), [
            0x56, 0x5A, 0x14, 0x00,  // magic, type 20 diskSet, flags
            0x20, 0x00, 0x00, 0x00,  // length 32
            0x02, 0x00,              // u16 count 2
            0x05, 0x00, 0x64, 0x69, 0x73, 0x6B, 0x30,        // "disk0"
            0x00, 0x00, 0x00, 0x80, 0x02, 0x00, 0x00, 0x00,  // u64 capacity 10 GiB
            0x05, 0x00, 0x64, 0x69, 0x73, 0x6B, 0x31,        // "disk1"
            0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00,  // u64 capacity 1 MiB
        ])
    }

    /// Docs/protocol.md §4.2, the diskChain example.
    func testDiskChain() throws {
        try check(.diskChain([SourceChainLink(file: "s1.vmdk", cid: 0x0a0b0c0d, parentCID: 0x11223344),
                              SourceChainLink(file: "base.vmdk", cid: 0x11223344, parentCID: 0xffffffff)]), [
            0x56, 0x5A, 0x15, 0x00,  // magic, type 21 diskChain, flags
            0x26, 0x00, 0x00, 0x00,  // length 38
            0x02, 0x00,              // u16 count 2
            0x07, 0x00, 0x73, 0x31, 0x2E, 0x76, 0x6D, 0x64, 0x6B,  // "s1.vmdk"
            0x0D, 0x0C, 0x0B, 0x0A, 0x44, 0x33, 0x22, 0x11,        // CID, parentCID
            0x09, 0x00, 0x62, 0x61, 0x73, 0x65, 0x2E, 0x76, 0x6D, 0x64, 0x6B,  // "base.vmdk"
            0x44, 0x33, 0x22, 0x11, 0xFF, 0xFF, 0xFF, 0xFF,        // CID, parentCID
        ])
        try check(.diskChain([]), [0x56, 0x5A, 0x15, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00])  // a raw source
    }

    /// The golden tests above cover every message type of the enum.
    func testEveryTypeHasAGoldenFrame() {
        let covered: Set<UInt8> = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 20, 21]
        var all = Set<UInt8>()
        for t in UInt8.min...UInt8.max where Message.MessageType(rawValue: t) != nil { all.insert(t) }
        XCTAssertEqual(all, covered, "a message type was added: give it a golden frame here and a row in Docs/protocol.md")
    }
}
