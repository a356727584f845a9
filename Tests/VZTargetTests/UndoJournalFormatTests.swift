import VZCore
import VZFormats
import XCTest

/// The pure `.vzundo` format and its decoder (the decoder is fed bytes; no I/O).
final class UndoJournalFormatTests: XCTestCase {
    typealias F = UndoJournalFormat
    let passID = F.PassID(bytes: Array(1...16))
    /// 3 whole blocks and a 100-byte last block.
    let capacity: UInt64 = 3 * 65536 + 100

    var header: F.Header {
        F.Header(job: "job-1", disk: "vm1_disk0", blockSize: 65536, capacity: capacity, startGeneration: 7,
                 passID: passID, createdUnixSeconds: 1_700_000_000)
    }

    /// Header, zeros(block 0), zeros(block 1), data(block 3: 100 bytes): 444 bytes.
    func smallJournal() throws -> (bytes: [UInt8], records: [F.Record]) {
        let h = header
        var bytes = try F.encodeHeader(h)
        var records: [F.Record] = []
        let specs: [(F.RecordKind, UInt64)] = [(.zeros, 0), (.zeros, 1), (.data, 3)]
        for (seq, (kind, block)) in specs.enumerated() {
            let e = h.blockExtent(block)
            let data = kind == .data ? UndoFixture.pattern(seq, Int(e.length)) : []
            records.append(F.Record(kind: kind, sequence: UInt64(seq), extent: e, data: data, fileOffset: UInt64(bytes.count)))
            bytes += F.encodeRecord(kind: kind, passID: passID, sequence: UInt64(seq), extent: e, data: data)
        }
        return (bytes, records)
    }

    /// Header and three whole 64 KiB data records.
    func bigJournal() throws -> (bytes: [UInt8], records: [F.Record]) {
        let h = header
        var bytes = try F.encodeHeader(h)
        var records: [F.Record] = []
        for (seq, block) in [2, 0, 1].enumerated() {
            let e = h.blockExtent(UInt64(block))
            let data = UndoFixture.pattern(seq + 50, Int(e.length))
            records.append(F.Record(kind: .data, sequence: UInt64(seq), extent: e, data: data, fileOffset: UInt64(bytes.count)))
            bytes += F.encodeRecord(kind: .data, passID: passID, sequence: UInt64(seq), extent: e, data: data)
        }
        return (bytes, records)
    }

    func testHeaderRoundTripIsByteExact() throws {
        let bytes = try F.encodeHeader(header)
        XCTAssertEqual(bytes.count, 200)
        XCTAssertEqual(Array(bytes[0..<8]), Array("VZREPUND".utf8))
        XCTAssertEqual(bytes[8], 1)            // version
        XCTAssertEqual(bytes[12], 200)         // headerSize
        XCTAssertEqual(Array(bytes[16..<20]), [0, 0, 1, 0])   // 65536 little-endian
        XCTAssertEqual(bytes[32], 7)           // startGeneration
        XCTAssertEqual(Array(bytes[48..<64]), passID.bytes)
        XCTAssertEqual(bytes[64], 5)           // "job-1"
        XCTAssertEqual(bytes[65], 9)           // "vm1_disk0"
        XCTAssertEqual(Array(bytes[68..<73]), Array("job-1".utf8))
        XCTAssertEqual(Array(bytes[132..<141]), Array("vm1_disk0".utf8))
        XCTAssertEqual(try F.decodeHeader(bytes, fileName: "x.vzundo"), header)
    }

    func testRecordLayoutAndChainedChecksum() throws {
        let e = header.blockExtent(3)
        let data = UndoFixture.pattern(9, Int(e.length))
        let rec = F.encodeRecord(kind: .data, passID: passID, sequence: 4, extent: e, data: data)
        XCTAssertEqual(rec.count, 48 + 100)
        XCTAssertEqual(Array(rec[0..<4]), Array("VZUR".utf8))
        XCTAssertEqual(rec[4], 1)
        XCTAssertEqual(Array(rec[8..<24]), passID.bytes)
        XCTAssertEqual(rec[24], 4)
        XCTAssertEqual(Array(rec[32..<40]), [0, 0, 3, 0, 0, 0, 0, 0])   // 196608
        XCTAssertEqual(Array(rec[40..<44]), [100, 0, 0, 0])
        // The checksum is one CRC32C over header bytes 0..<44 followed by the data.
        let crc = CRC32C.checksum(Array(rec[0..<44]) + data)
        XCTAssertEqual(Array(rec[44..<48]), [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)])
        XCTAssertEqual(CRC32C.checksum(data, seed: CRC32C.checksum(rec[0..<44])), crc)
        let zeros = F.encodeRecord(kind: .zeros, passID: passID, sequence: 0, extent: header.blockExtent(0))
        XCTAssertEqual(zeros.count, 48)
    }

    func testDecoderAtEverySplitPoint() throws {
        let (bytes, records) = try smallJournal()
        XCTAssertEqual(bytes.count, 444)
        for split in 0...bytes.count {
            var d = UndoJournalDecoder(fileName: "j")
            var got: [F.Record] = []
            d.append(bytes[0..<split])
            while let r = try d.nextRecord() { got.append(r) }
            d.append(bytes[split...])
            while let r = try d.nextRecord() { got.append(r) }
            XCTAssertFalse(d.isEnded, "split \(split)")
            d.finish()
            while let r = try d.nextRecord() { got.append(r) }
            XCTAssertEqual(got, records, "split \(split)")
            XCTAssertEqual(d.validLength, UInt64(bytes.count))
            XCTAssertTrue(d.isEnded)
            XCTAssertNil(d.tail, "split \(split)")
            XCTAssertEqual(d.header, header)
        }
    }

    func testDecoderFedByteByByteAndInOddChunks() throws {
        let (bytes, records) = try bigJournal()
        for chunk in [1, 7, 4093, 65_584, bytes.count] {
            var d = UndoJournalDecoder(fileName: "j")
            var got: [F.Record] = []
            var i = 0
            while i < bytes.count {
                d.append(bytes[i..<min(i + chunk, bytes.count)])
                i += chunk
                while let r = try d.nextRecord() { got.append(r) }
            }
            d.finish()
            while let r = try d.nextRecord() { got.append(r) }
            XCTAssertEqual(got, records, "chunk \(chunk)")
            XCTAssertNil(d.tail)
        }
    }

    func testTornTailAtEveryTruncationPoint() throws {
        for (bytes, records) in [try smallJournal(), try bigJournal()] {
            let ends = records.map { $0.fileOffset + UInt64($0.encodedSize) }
            let step = bytes.count > 1000 ? 97 : 1
            for length in stride(from: 0, through: bytes.count, by: step) {
                let prefix = Array(bytes[0..<length])
                if length < 200 {
                    XCTAssertThrowsError(try UndoJournalDecoder.decodeAll(prefix, fileName: "d.vzundo"), "length \(length)") { e in
                        XCTAssertEqual((e as? VZError)?.kind, .corruptJournal)
                        XCTAssertTrue("\(e)".contains("truncated"), "\(e)")
                        XCTAssertTrue("\(e)".contains("d.vzundo"), "\(e)")
                    }
                    continue
                }
                let result = try UndoJournalDecoder.decodeAll(prefix, fileName: "d.vzundo")
                let complete = ends.filter { $0 <= UInt64(length) }.count
                XCTAssertEqual(result.records, Array(records.prefix(complete)), "length \(length)")
                let valid = complete == 0 ? 200 : ends[complete - 1]
                XCTAssertEqual(result.validLength, valid, "length \(length)")
                XCTAssertEqual(result.tail, valid == UInt64(length) ? nil : .truncated, "length \(length)")
            }
        }
    }

    func testBitFlipEndsTheJournalAtTheDamagedRecord() throws {
        let (bytes, records) = try smallJournal()
        for i in 200..<bytes.count {
            let index = records.lastIndex { $0.fileOffset <= UInt64(i) }!
            for bit in 0..<8 {
                var damaged = bytes
                damaged[i] ^= 1 << bit
                let result = try UndoJournalDecoder.decodeAll(damaged, fileName: "j")
                // Records after the damaged one are intact, but must never be accepted.
                XCTAssertEqual(result.records, Array(records.prefix(index)), "byte \(i) bit \(bit)")
                XCTAssertEqual(result.validLength, records[index].fileOffset)
                XCTAssertNotNil(result.tail)
            }
        }
    }

    func testGarbageTailIsIgnoredAndCounted() throws {
        let (bytes, records) = try smallJournal()
        for garbage in [[UInt8](repeating: 0, count: 4096), UndoFixture.pattern(3, 5000), Array("VZUR".utf8)] {
            var d = UndoJournalDecoder(fileName: "j")
            d.append(bytes + garbage)
            var got: [F.Record] = []
            while let r = try d.nextRecord() { got.append(r) }
            XCTAssertEqual(got, records)
            d.finish()
            XCTAssertNil(try d.nextRecord())
            XCTAssertTrue(d.isEnded)
            XCTAssertNotNil(d.tail)
            XCTAssertEqual(d.ignoredBytes, UInt64(garbage.count))
        }
    }

    func testHugeLengthEndsWithoutWaitingForData() throws {
        var bytes = try F.encodeHeader(header)
        var rec = F.encodeRecord(kind: .zeros, passID: passID, sequence: 0, extent: header.blockExtent(0))
        rec[4] = 1                                   // kind data ...
        rec[40] = 0xFF; rec[41] = 0xFF; rec[42] = 0xFF; rec[43] = 0xFF   // ... of 4 GiB
        bytes += rec
        var d = UndoJournalDecoder(fileName: "j")
        d.append(bytes)
        XCTAssertNil(try d.nextRecord())
        XCTAssertTrue(d.isEnded, "the decoder must not wait for (or buffer) 4 GiB")
        XCTAssertEqual(d.tail, .implausibleLength)
        d.append([UInt8](repeating: 1, count: 1 << 20))
        XCTAssertEqual(d.ignoredBytes, 48 + (1 << 20))
    }

    func testOtherPassAndSequenceGapEndTheJournal() throws {
        let h = header
        let good = F.encodeRecord(kind: .zeros, passID: passID, sequence: 0, extent: h.blockExtent(0))
        let other = F.encodeRecord(kind: .zeros, passID: F.PassID(bytes: Array(repeating: 9, count: 16)), sequence: 1, extent: h.blockExtent(1))
        let gap = F.encodeRecord(kind: .zeros, passID: passID, sequence: 2, extent: h.blockExtent(1))
        let next = F.encodeRecord(kind: .zeros, passID: passID, sequence: 1, extent: h.blockExtent(2))
        for (bad, reason) in [(other, UndoJournalDecoder.TailReason.otherPass), (gap, .sequenceGap)] {
            let r = try UndoJournalDecoder.decodeAll(try F.encodeHeader(h) + good + bad + next, fileName: "j")
            XCTAssertEqual(r.records.count, 1)
            XCTAssertEqual(r.tail, reason)
        }
    }

    func testChecksummedRecordBreakingTheRulesIsCorruptJournal() throws {
        let h = header
        let cases: [(Extent, String)] = [
            (Extent(offset: 100, length: 65536), "offset"),             // not block-aligned
            (Extent(offset: 65536, length: 4096), "length"),            // not the whole block
            (Extent(offset: 3 * 65536, length: 65536), "length"),      // the last block is 100 bytes
            (Extent(offset: 4 * 65536, length: 100), "offset"),       // beyond the disk
        ]
        for (e, field) in cases {
            let rec = F.encodeRecord(kind: .zeros, passID: passID, sequence: 0, extent: e)
            // The record starts right after the 200-byte header; offset is at +32, length at +40.
            let at = 200 + (field == "offset" ? 32 : 40)
            XCTAssertThrowsError(try UndoJournalDecoder.decodeAll(try F.encodeHeader(h) + rec, fileName: "d1.vzundo"), "\(e)") { err in
                XCTAssertEqual((err as? VZError)?.kind, .corruptJournal)
                XCTAssertTrue("\(err)".contains("record 0 at byte 200: field '\(field)' at byte \(at):"), "\(err)")
                XCTAssertTrue("\(err)".contains("d1.vzundo"), "\(err)")
            }
        }
    }

    /// Every bad header field is a `.corruptJournal` error naming the file and the field.
    func testBadHeaderNamesFileAndField() throws {
        let good = try F.encodeHeader(header)
        func reseal(_ b: inout [UInt8]) {
            let crc = CRC32C.checksum(b[0..<196])
            for i in 0..<4 { b[196 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        }
        // (field, the offset the field starts at, whether the header is resealed, the damage)
        let cases: [(String, Int, Bool, (inout [UInt8]) -> Void)] = [
            ("magic", 0, false, { $0[0] = UInt8(ascii: "X") }),
            ("version", 8, false, { $0[8] = 2 }),
            ("headerSize", 12, false, { $0[12] = 201 }),
            ("headerCRC32C", 196, false, { $0[24] ^= 1 }),
            ("headerCRC32C", 196, false, { $0[197] ^= 0x10 }),
            ("blockSize", 16, true, { $0[16] = 0; $0[17] = 0x10; $0[18] = 0 }),   // 4096
            ("blockSize", 16, true, { $0[18] = 3 }),                              // not a power of two
            ("flags", 20, true, { $0[20] = 1 }),
            ("capacity", 24, true, { for i in 24..<32 { $0[i] = 0 } }),
            ("reserved", 66, true, { $0[66] = 1 }),
            ("jobNameLength", 64, true, { $0[64] = 0 }),
            ("diskNameLength", 65, true, { $0[65] = 65 }),
            ("jobName", 68, true, { $0[70] = 0xFF }),                  // invalid UTF-8
            ("jobName", 68, true, { $0[100] = 1 }),                    // bytes after the name
            ("diskName", 132, true, { $0[132] = UInt8(ascii: "/") }),  // NameRules
            ("diskName", 132, true, { $0[132] = UInt8(ascii: ".") }),  // starts with '.'
        ]
        for (field, offset, resealed, mutate) in cases {
            var b = good
            mutate(&b)
            if resealed { reseal(&b) }
            XCTAssertThrowsError(try F.decodeHeader(b, fileName: "/ds/job/d.vzundo"), field) { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptJournal, field)
                XCTAssertTrue("\(e)".contains("/ds/job/d.vzundo"), "\(e)")
                XCTAssertTrue("\(e)".contains("field '\(field)' at byte \(offset):"), "expected field \(field) at byte \(offset): \(e)")
            }
            // The streaming decoder says the same.
            var d = UndoJournalDecoder(fileName: "/ds/job/d.vzundo")
            d.append(b)
            XCTAssertThrowsError(try d.nextRecord(), field)
        }
        // An unrelated file is rejected as soon as its first bytes are there.
        var d = UndoJournalDecoder(fileName: "x")
        d.append(Array("#!/bin/sh\n".utf8))
        XCTAssertThrowsError(try d.nextRecord()) { XCTAssertTrue("\($0)".contains("'magic'")) }
    }

    /// Regression: a value rejected after it was read was reported at the byte after it (version
    /// at byte 12, blockSize at 20, jobNameLength at 68); a truncated header was reported at its
    /// length instead of the header's offset.
    func testRegression_ErrorsNameTheFieldsOwnOffset() throws {
        var b = try F.encodeHeader(header)
        b[8] = 7
        let truncated = Array(try F.encodeHeader(header).prefix(150))
        for (bytes, parts) in [(b, ["field 'version' at byte 8:", "version 7"]),
                               (truncated, ["field 'header' at byte 0:", "after 150 bytes", "truncated"])] {
            XCTAssertThrowsError(try F.decodeHeader(bytes, fileName: "d.vzundo")) { e in
                XCTAssertEqual((e as? VZError)?.kind, .corruptJournal)
                for p in parts { XCTAssertTrue("\(e)".contains(p), "'\(e)' does not mention '\(p)'") }
            }
        }
    }
}
