import XCTest
@testable import VZCore

final class FrameDecoderTests: XCTestCase {
    private let messages = sampleMessages()
    private lazy var stream: [UInt8] = messages.flatMap { $0.encodedFrame() }

    /// Drains every complete frame, decoding each as a message numbered by the decoder.
    private func drain(_ d: inout FrameDecoder, into out: inout [Message]) throws {
        while let f = try d.nextFrame() {
            out.append(try Message.decode(f, frameNumber: d.framesDecoded))
        }
    }

    func testWholeStreamDecodesInOrder() throws {
        var d = FrameDecoder()
        d.append(stream)
        var out: [Message] = []
        try drain(&d, into: &out)
        XCTAssertEqual(out, messages)
        XCTAssertEqual(d.framesDecoded, messages.count)
        XCTAssertEqual(d.bufferedBytes, 0)
    }

    func testSplitAtEveryOffsetYieldsSameMessages() throws {
        for cut in 0...stream.count {
            var d = FrameDecoder()
            var out: [Message] = []
            d.append(Array(stream[..<cut]))
            try drain(&d, into: &out)
            d.append(Array(stream[cut...]))
            try drain(&d, into: &out)
            XCTAssertEqual(out, messages, "split at \(cut)")
            XCTAssertEqual(d.bufferedBytes, 0, "split at \(cut)")
        }
    }

    func testByteByByte() throws {
        var d = FrameDecoder()
        var out: [Message] = []
        for b in stream {
            d.append([b])
            try drain(&d, into: &out)
        }
        XCTAssertEqual(out, messages)
    }

    func testRandomChunkings() throws {
        var rng = SeededRNG(seed: 7)
        for round in 0..<200 {
            var d = FrameDecoder()
            var out: [Message] = []
            var pos = 0
            while pos < stream.count {
                let n = min(stream.count - pos, Int.random(in: 0...64, using: &rng))
                d.append(Array(stream[pos..<pos + n]))
                pos += n
                try drain(&d, into: &out)
            }
            XCTAssertEqual(out, messages, "round \(round)")
        }
    }

    func testEveryTruncationNeedsMoreBytesNotAnError() throws {
        for m in messages {
            let frame = m.encodedFrame()
            for n in 0..<frame.count {
                var d = FrameDecoder()
                d.append(Array(frame[..<n]))
                XCTAssertNil(try d.nextFrame(), "\(m.type) truncated to \(n)")
                XCTAssertEqual(d.bufferedBytes, n)
                XCTAssertEqual(d.framesDecoded, 0)
            }
        }
    }

    func testOversizedLengthIsRejectedFromTheHeaderAlone() {
        for length in [UInt32(Frame.maxPayload + 1), UInt32(64 << 20), UInt32.max] {
            var d = FrameDecoder()
            var w = ByteWriter()
            w.u16(Frame.magic); w.u8(Message.MessageType.blockData.rawValue); w.u8(0); w.u32(length)
            d.append(w.bytes)
            // Only the 8 header bytes are buffered: the error comes before any payload is awaited
            // or allocated.
            assertVZError(.corruptFrame, containing: ["frame #1", "length", "\(length)", "\(Frame.maxPayload)"]) {
                try d.nextFrame()
            }
            XCTAssertEqual(d.bufferedBytes, Frame.headerSize)
        }
    }

    func testLengthLimitIsConfigurableAndInclusive() throws {
        var d = FrameDecoder(maxPayload: 16)
        d.append(Frame(type: 10, payload: [UInt8](repeating: 1, count: 16)).encoded())
        XCTAssertEqual(try d.nextFrame()?.payload.count, 16)
        d.append(Frame(type: 10, payload: [UInt8](repeating: 1, count: 17)).encoded())
        assertVZError(.corruptFrame, containing: ["frame #2", "length", "17", "16"]) { try d.nextFrame() }
        // A larger limit than the protocol's is clamped to the protocol's.
        XCTAssertEqual(FrameDecoder(maxPayload: Int.max).maxPayload, Frame.maxPayload)
    }

    func testMaximalLengthWithoutPayloadWaits() throws {
        var d = FrameDecoder()
        d.append(Frame.header(type: 6, length: Frame.maxPayload))
        XCTAssertNil(try d.nextFrame())
    }

    func testBadMagicNamesFrameNumberAndField() throws {
        var bytes = Message.bye.encodedFrame() + Message.bye.encodedFrame()
        var bad = Message.bye.encodedFrame()
        bad[0] = 0x41
        bytes += bad
        var d = FrameDecoder()
        d.append(bytes)
        XCTAssertNotNil(try d.nextFrame())
        XCTAssertNotNil(try d.nextFrame())
        assertVZError(.corruptFrame, containing: ["frame #3", "magic", "0x5a56"]) { try d.nextFrame() }
    }

    func testUnknownFlagsRejected() {
        var f = Message.bye.encodedFrame()
        f[3] = 0x80
        var d = FrameDecoder()
        d.append(f)
        assertVZError(.corruptFrame, containing: ["frame #1", "flags", "0x80"]) { try d.nextFrame() }
    }

    func testEncodedHeaderLayout() {
        let f = Frame(type: 0x0B, payload: [1, 2, 3]).encoded()
        XCTAssertEqual(f, [0x56, 0x5A, 0x0B, 0x00, 0x03, 0x00, 0x00, 0x00, 1, 2, 3])
        let block = Message.blockData(.init(offset: 1, rawLength: 2, encoding: .raw, sha256: [UInt8](repeating: 0, count: 32),
                                            payload: [9, 9])).encodedFrame()
        XCTAssertEqual(Array(block[0..<8]), [0x56, 0x5A, 6, 0, 47, 0, 0, 0])
        XCTAssertEqual(block.count, 8 + 47)
    }

    /// Large payloads are received in place (`fillPending`); mixed with `append` in random
    /// chunkings the frames come out the same, and no byte of the next frame is taken.
    func testLargeFramesFilledInPlace() throws {
        var rng = SeededRNG(seed: 11)
        let big1 = Frame(type: 6, payload: [UInt8].random(count: 300_000, using: &rng))
        let big2 = Frame(type: 6, payload: [UInt8].random(count: FrameDecoder.directPayload, using: &rng))
        let small = Frame(type: 10, payload: [1, 2, 3])
        let frames = [small, big1, small, big2, big2, small]
        let bytes = frames.flatMap { $0.encoded() }
        for round in 0..<50 {
            var d = FrameDecoder()
            var out: [Frame] = []
            var pos = 0
            var direct = 0
            while pos < bytes.count {
                let want = Int.random(in: 1...100_000, using: &rng)
                if d.pendingSpace > 0 {
                    let n = try d.fillPending { room in
                        let n = min(want, room.count, bytes.count - pos)
                        bytes.withUnsafeBytes { room.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[pos..<pos + n])) }
                        return n
                    }
                    pos += n ?? 0
                    direct += 1
                } else {
                    let n = min(want, bytes.count - pos)
                    d.append(Array(bytes[pos..<pos + n]))
                    pos += n
                }
                XCTAssertEqual(d.bufferedBytes + out.reduce(0) { $0 + $1.encoded().count }, pos, "round \(round)")
                while let f = try d.nextFrame() { out.append(f) }
            }
            XCTAssertEqual(out, frames, "round \(round)")
            XCTAssertEqual(d.bufferedBytes, 0)
            XCTAssertEqual(d.framesDecoded, frames.count)
            XCTAssertGreaterThan(direct, 0, "round \(round): the large payloads were filled in place")
        }
    }
}
