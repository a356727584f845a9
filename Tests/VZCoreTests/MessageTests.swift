import XCTest
@testable import VZCore

final class MessageTests: XCTestCase {
    private func frame(_ m: Message) throws -> Frame {
        var d = FrameDecoder()
        d.append(m.encodedFrame())
        return try XCTUnwrap(try d.nextFrame())
    }

    func testEveryMessageCaseRoundTrips() throws {
        let samples = sampleMessages()
        // Every case of the enum is among the samples.
        XCTAssertEqual(Set(samples.map { $0.type.rawValue }), Set(1...13).union([20, 21]))
        for m in samples {
            let f = try frame(m)
            XCTAssertEqual(f.type, m.type.rawValue)
            XCTAssertEqual(try Message.decode(f, frameNumber: 1), m)
        }
    }

    func testRandomMessagesRoundTrip() throws {
        var rng = SeededRNG(seed: 99)
        func str(_ max: Int, ascii: Bool = false) -> String {
            let alphabet = Array(ascii ? "abcXYZ019-_. " : "abcXYZ019-_.é✓ ")
            return String((0..<Int.random(in: 0...max, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
        }
        for _ in 0..<300 {
            let entries = (0..<Int.random(in: 0...20, using: &rng)).map { _ -> BlockMap.Entry in
                switch UInt8.random(in: 0...2, using: &rng) {
                case 0: return .unknown
                case 1: return .zero
                default: return .data(SHA256Digest([UInt8].random(count: 32, using: &rng)))
                }
            }
            let payload = [UInt8].random(count: Int.random(in: 0...200, using: &rng), using: &rng)
            let candidates: [Message] = [
                .hello(job: str(60), sourceVersion: str(60)),
                .openDisk(.init(disk: str(60), capacity: rng.next(), blockSize: UInt32.random(in: 0...UInt32.max, using: &rng),
                                mode: Bool.random(using: &rng) ? .full : .differential)),
                .diskState(.init(mapStatus: .rebuilt, generation: rng.next(), entryCount: rng.next(), note: str(200))),
                .mapChunk(firstIndex: rng.next(), entries: entries),
                .blockData(.init(offset: rng.next(), rawLength: UInt32(payload.count), encoding: .raw,
                                 sha256: [UInt8].random(count: 32, using: &rng), payload: payload)),
                .zeroExtent(Extent(offset: rng.next(), length: rng.next())),
                .error(kind: str(64, ascii: true), message: str(300)),
            ]
            for m in candidates {
                XCTAssertEqual(try Message.decode(try frame(m), frameNumber: 1), m)
            }
        }
    }

    /// diskSet and diskChain (protocol 3): counts are checked before anything is allocated.
    func testDiskSetAndDiskChainBadCountsAreNamed() {
        func decode(_ type: UInt8, _ payload: [UInt8]) throws -> Message {
            try Message.decode(Frame(type: type, payload: payload), frameNumber: 4)
        }
        assertVZError(.protocolViolation, containing: ["frame #4", "field 'count'", "1 to 4096"]) { try decode(20, [0, 0]) }
        assertVZError(.protocolViolation, containing: ["field 'count'", "4097 disks"]) { try decode(20, [0x01, 0x10] + [UInt8](repeating: 0, count: 40970)) }
        assertVZError(.protocolViolation, containing: ["field 'count'", "do not fit"]) { try decode(20, [0xFF, 0x0F, 1, 0, 0x61]) }
        assertVZError(.protocolViolation, containing: ["field 'count'", "256 links"]) { try decode(21, [0x00, 0x01]) }
        assertVZError(.protocolViolation, containing: ["field 'count'", "do not fit"]) { try decode(21, [0x05, 0x00, 1, 0]) }
        // An empty file name, and one longer than 1024 bytes.
        assertVZError(.protocolViolation, containing: ["field 'links[0].file'", "empty"]) { try decode(21, [1, 0, 0, 0] + [UInt8](repeating: 0, count: 8)) }
        assertVZError(.protocolViolation, containing: ["field 'links[0].file'", "limit of 1024"]) {
            try decode(21, [1, 0, 0x01, 0x04] + [UInt8](repeating: 0x61, count: 1025 + 8))
        }
        assertVZError(.protocolViolation, containing: ["field 'disks[0].name'", "limit of 255"]) {
            try decode(20, [1, 0, 0x00, 0x01] + [UInt8](repeating: 0x61, count: 256 + 8))
        }
    }

    func testUnknownMessageTypeNamesFrame() {
        for t: UInt8 in [0, 14, 200, 255] {
            assertVZError(.protocolViolation, containing: ["frame #7", "type", "\(t)"]) {
                try Message.decode(Frame(type: t, payload: []), frameNumber: 7)
            }
        }
    }

    func testTrailingBytesRejected() throws {
        for m in sampleMessages() {
            if case .blockData = m { continue }
            var f = try frame(m)
            f.payload.append(0)
            // Protocol version 3: a version-2 openDisk may end in a flags byte (0: a plain one).
            if case let .openDisk(o) = m, !o.readOnly {
                XCTAssertEqual(try Message.decode(f, frameNumber: 4), m)
                continue
            }
            // mapChunk knows its size from `count`, so an extra byte is a size mismatch of 'entries';
            // a version-2 progress with one more byte is a version-3 step cut short; hello
            // (version 3) may end in a pass id: one extra byte is a truncated 'passId'.
            var reason = m.type == .mapChunk ? "field 'entries'" : m.type == .hello ? "field 'passId.length'" : "trailing"
            if case .progress(_, nil) = m { reason = "field 'done'" }
            assertVZError(.protocolViolation, containing: ["frame #4", "\(m.type)", reason], "\(m.type)") {
                try Message.decode(f, frameNumber: 4)
            }
        }
        // A raw block's payload length must equal rawLength: an extra byte is named.
        let raw = Message.blockData(.init(offset: 0, rawLength: 4, encoding: .raw, sha256: [UInt8](repeating: 0, count: 32),
                                          payload: [1, 2, 3, 4]))
        var f = try frame(raw)
        f.payload.append(5)
        assertVZError(.protocolViolation, containing: ["frame #4", "payload", "5 bytes", "rawLength says 4"]) {
            try Message.decode(f, frameNumber: 4)
        }
    }

    /// Every proper prefix of every payload fails with an error naming the frame and a field.
    /// (An lz4 block's payload has no length of its own, so its prefixes beyond the fixed
    /// fields are legal; the test stops at the fixed fields for it.)
    func testEveryTruncatedPayloadFailsNamingFrameAndField() throws {
        for m in sampleMessages() {
            let full = try frame(m)
            var limit = full.payload.count
            if case let .blockData(b) = m, b.encoding == .lz4 { limit = 8 + 4 + 1 + 32 }
            // The version-3 trailing fields cut off entirely leave the version-2 message.
            let v2Length: Int? = {
                switch m {
                case .progress(_, _?): return 8
                case let .openDisk(o) where o.readOnly: return full.payload.count - 1
                default: return nil
                }
            }()
            for n in 0..<limit where n != v2Length {
                let f = Frame(type: full.type, payload: Array(full.payload[..<n]))
                assertVZError(.protocolViolation, containing: ["frame #9", "field '"], "\(m.type) cut to \(n)") {
                    try Message.decode(f, frameNumber: 9)
                }
            }
        }
    }

    func testTruncationNamesTheFieldThatWasCut() throws {
        let hello = try frame(.hello(job: "job1", sourceVersion: "0.1.0")).payload
        assertVZError(.protocolViolation, containing: ["field 'job.length'", "truncated"]) {
            try Message.decode(Frame(type: 1, payload: [hello[0]]), frameNumber: 1)
        }
        assertVZError(.protocolViolation, containing: ["field 'sourceVersion'"]) {
            try Message.decode(Frame(type: 1, payload: Array(hello.dropLast())), frameNumber: 1)
        }
        let open = try frame(.openDisk(.init(disk: "d", capacity: 1, blockSize: 65536, mode: .full))).payload
        assertVZError(.protocolViolation, containing: ["field 'capacity'"]) {
            try Message.decode(Frame(type: 3, payload: Array(open[..<5])), frameNumber: 1)
        }
        assertVZError(.protocolViolation, containing: ["field 'mode'"]) {
            try Message.decode(Frame(type: 3, payload: Array(open.dropLast())), frameNumber: 1)
        }
    }

    func testEnumFieldsWithUnknownValuesAreNamed() throws {
        var open = try frame(.openDisk(.init(disk: "d", capacity: 1, blockSize: 65536, mode: .full))).payload
        open[open.count - 1] = 9
        assertVZError(.protocolViolation, containing: ["field 'mode'", "9"]) { try Message.decode(Frame(type: 3, payload: open), frameNumber: 1) }

        var state = try frame(.diskState(.init(mapStatus: .valid, generation: 1, entryCount: 1))).payload
        state[0] = 4  // 3 is replicaModified
        assertVZError(.protocolViolation, containing: ["field 'mapStatus'"]) { try Message.decode(Frame(type: 4, payload: state), frameNumber: 1) }

        var block = try frame(.blockData(.init(offset: 0, rawLength: 0, encoding: .raw, sha256: [UInt8](repeating: 0, count: 32),
                                               payload: []))).payload
        block[12] = 2
        assertVZError(.protocolViolation, containing: ["field 'encoding'"]) { try Message.decode(Frame(type: 6, payload: block), frameNumber: 1) }
    }

    func testInvalidUTF8StringRejected() {
        var w = ByteWriter()
        w.u16(2); w.raw([0xC3, 0x28]); w.u16(0)
        assertVZError(.protocolViolation, containing: ["field 'job'", "UTF-8"]) { try Message.decode(Frame(type: 1, payload: w.bytes), frameNumber: 1) }
    }

    func testOverlongNameRejected() {
        var w = ByteWriter()
        w.string(String(repeating: "a", count: Message.maxNameLength + 1)); w.u64(1); w.u32(65536); w.u8(0)
        assertVZError(.protocolViolation, containing: ["field 'disk'", "256", "255"]) { try Message.decode(Frame(type: 3, payload: w.bytes), frameNumber: 1) }
    }

    /// Docs/protocol.md §2: an error's kind is at most 64 bytes, its message at most 4096 on receipt
    /// (the sender cuts it to 2000).
    func testErrorStringLimits() throws {
        func errorPayload(kind: Int, message: Int) -> [UInt8] {
            var w = ByteWriter()
            w.string(String(repeating: "k", count: kind)); w.string(String(repeating: "m", count: message))
            return w.bytes
        }
        XCTAssertEqual(try Message.decode(Frame(type: 11, payload: errorPayload(kind: 64, message: 4096)), frameNumber: 1),
                       .error(kind: String(repeating: "k", count: 64), message: String(repeating: "m", count: 4096)))
        assertVZError(.protocolViolation, containing: ["field 'kind'", "65", "64"]) {
            try Message.decode(Frame(type: 11, payload: errorPayload(kind: 65, message: 0)), frameNumber: 1)
        }
        assertVZError(.protocolViolation, containing: ["field 'message'", "4097", "4096"]) {
            try Message.decode(Frame(type: 11, payload: errorPayload(kind: 1, message: 4097)), frameNumber: 1)
        }
    }

    // MARK: mapChunk

    private func mapChunkPayload(count: UInt32, entries: Int) -> [UInt8] {
        var w = ByteWriter()
        w.u64(0); w.u32(count)
        for _ in 0..<entries { BlockMap.Entry.zero.encode(into: &w) }
        return w.bytes
    }

    func testMapChunkAtTheLimitDecodes() throws {
        let m = try Message.decode(Frame(type: 5, payload: mapChunkPayload(count: 4096, entries: 4096)), frameNumber: 1)
        guard case let .mapChunk(_, entries) = m else { return XCTFail("\(m)") }
        XCTAssertEqual(entries.count, 4096)
    }

    func testMapChunkOverTheLimitRejected() {
        XCTAssertEqual(Message.maxMapChunkEntries, 4096)
        assertVZError(.protocolViolation, containing: ["frame #2", "field 'count'", "4097", "4096"]) {
            try Message.decode(Frame(type: 5, payload: mapChunkPayload(count: 4097, entries: 4097)), frameNumber: 2)
        }
        // A huge count with no entries behind it is refused before anything is reserved for it.
        assertVZError(.protocolViolation, containing: ["field 'count'"]) {
            try Message.decode(Frame(type: 5, payload: mapChunkPayload(count: UInt32.max, entries: 0)), frameNumber: 2)
        }
    }

    func testMapChunkCountMustMatchBytes() {
        assertVZError(.protocolViolation, containing: ["field 'entries'", "66 bytes for 2 entries", "got 33"]) {
            try Message.decode(Frame(type: 5, payload: mapChunkPayload(count: 2, entries: 1)), frameNumber: 1)
        }
        assertVZError(.protocolViolation, containing: ["field 'entries'"]) {
            try Message.decode(Frame(type: 5, payload: mapChunkPayload(count: 1, entries: 2)), frameNumber: 1)
        }
    }

    func testMapChunkEntryChecks() {
        var p = mapChunkPayload(count: 3, entries: 3)
        p[12 + 33 * 2] = 7  // kind of entries[2]
        assertVZError(.protocolViolation, containing: ["entries[2].kind", "7"]) { try Message.decode(Frame(type: 5, payload: p), frameNumber: 1) }
        p = mapChunkPayload(count: 3, entries: 3)
        p[12 + 33 + 5] = 1  // hash byte of a zero entry
        assertVZError(.protocolViolation, containing: ["entries[1].hash", "must be zero"]) { try Message.decode(Frame(type: 5, payload: p), frameNumber: 1) }
    }

    // MARK: what the encoder writes, the decoder must read

    /// `.error` keeps at most 2000 bytes of the message's UTF-8, cut at a character boundary, so
    /// whatever the encoder produces decodes (the decoder reads at most 4096 bytes).
    func testRegression_ErrorMessageWithMultibyteTextDecodes() throws {
        let long = String(repeating: "€", count: 3000)
        let m = Message.error(kind: "replicaIO", message: long)
        let decoded = try Message.decode(try frame(m), frameNumber: 1)
        XCTAssertEqual(decoded, .error(kind: "replicaIO", message: String(long.prefix(666))))  // 666 x 3 bytes
    }

    func testLongASCIIErrorMessageIsTruncatedTo2000() throws {
        let m = Message.error(kind: "internal", message: String(repeating: "x", count: 5000))
        XCTAssertEqual(try Message.decode(try frame(m), frameNumber: 1),
                       .error(kind: "internal", message: String(repeating: "x", count: 2000)))
    }
}

/// Strings that exceed what their reader accepts are cut at a character boundary by the writer.
final class MessageStringLimitTests: XCTestCase {
    func testALongMapNoteIsCutToWhatTheReaderAccepts() throws {
        let note = String(repeating: "é", count: 5000)  // 10,000 bytes of 2-byte characters
        let m = Message.diskState(.init(mapStatus: .rebuilt, generation: 3, entryCount: 10, note: note))
        var d = FrameDecoder()
        d.append(m.encodedFrame())
        guard case let .diskState(s)? = try d.nextFrame().map({ try Message.decode($0) }) else { return XCTFail("no diskState") }
        XCTAssertEqual(s.note.utf8.count, 4096)
        XCTAssertTrue(s.note.allSatisfy { $0 == "é" })
    }

    func testByteWriterNeverSplitsAUTF8Sequence() throws {
        let s = String(repeating: "a", count: 65534) + "€€"  // 65,534 + 6 bytes: the limit falls inside the first €
        var w = ByteWriter()
        w.string(s)
        var r = ByteReader(w.bytes[...], context: "t", errorKind: .corruptFrame)
        let back = try r.string("s", maxLength: 70000)
        XCTAssertEqual(back.utf8.count, 65534)
        XCTAssertEqual(back, String(repeating: "a", count: 65534))
    }

    /// Protocol 3: hello may end in the pass id; a version-2 hello (without it) still decodes,
    /// and a hello with a pass id still rejects trailing bytes after it.
    func testHelloPassIdIsATrailingOptionalField() throws {
        let id = "469755c1-02f8-4871-94db-91e9fe925e35"
        let v3 = Message.hello(job: "vm1", sourceVersion: "s 1", passId: id)
        let v2 = Message.hello(job: "vm1", sourceVersion: "s 1")
        func frame(_ m: Message) throws -> Frame {
            var d = FrameDecoder()
            d.append(m.encodedFrame())
            return try XCTUnwrap(try d.nextFrame())
        }
        let f3 = try frame(v3), f2 = try frame(v2)
        XCTAssertEqual(Array(f3.payload.prefix(f2.payload.count)), f2.payload, "the pass id is appended, the rest unchanged")
        XCTAssertEqual(Array(f3.payload.suffix(38)), [36, 0] + Array(id.utf8))
        XCTAssertEqual(try Message.decode(f3), v3)
        XCTAssertEqual(try Message.decode(f2), v2)
        var extra = f3
        extra.payload.append(0)
        assertVZError(.protocolViolation, containing: ["trailing"]) { try Message.decode(extra) }
        var long = f2
        long.payload += [65, 0] + [UInt8](repeating: 0x61, count: 65)
        assertVZError(.protocolViolation, containing: ["passId", "limit of 64"]) { try Message.decode(long) }
    }
}
