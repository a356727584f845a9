import VZCore

/// The `.vzundo` file beside each replica (Docs/formats.md, "## .vzundo"): the write-ahead undo
/// journal of one pass over one disk. It holds the pre-pass original of every block the pass
/// overwrites, each block exactly once, so the pass can be rolled back. Little-endian, field by
/// field:
///
///     header (200 bytes)  magic "VZREPUND", version u32 = 1, headerSize u32 = 200, blockSize u32,
///                         flags u32 = 0, capacity u64, startGeneration u64, createdUnixSeconds u64,
///                         passID [16], jobNameLength u8, diskNameLength u8, reserved u16 = 0,
///                         jobName [64], diskName [64] (UTF-8, zero-padded),
///                         headerCRC32C u32 (bytes 0..<196)
///     records             recordHeader (48 bytes): magic "VZUR", kind u8 (1 data, 2 zeros),
///                         reserved [3] = 0, passID [16], sequence u64, offset u64, length u32,
///                         recordCRC32C u32 (record bytes 0..<44, then the data);
///                         then `length` bytes of original data for kind 1, nothing for kind 2
///
/// This file has no I/O: `UndoJournalFormat` encodes, `UndoJournalDecoder` is a state machine fed
/// with bytes.
public enum UndoJournalFormat {
    public static let magic: [UInt8] = Array("VZREPUND".utf8)
    public static let recordMagic: [UInt8] = Array("VZUR".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 200
    public static let headerCRCOffset = 196
    public static let recordHeaderSize = 48
    public static let recordCRCOffset = 44
    /// Names are job and disk names (NameRules: at most 64 bytes).
    public static let maxNameLength = 64
    /// A record covers one block, and blocks are at most 8 MiB.
    public static let maxRecordLength = Int(BlockSize.maxBytes)

    /// Identifies one pass. Random, so that a record of an earlier pass can never be mistaken for
    /// one of this pass. Stored as 16 bytes; `description` is those bytes in hex, file order.
    public struct PassID: Hashable, Sendable, CustomStringConvertible {
        public var bytes: [UInt8]

        /// `bytes` must hold exactly 16 bytes.
        public init(bytes: [UInt8]) {
            precondition(bytes.count == 16, "a pass id is 16 bytes")
            self.bytes = bytes
        }

        public static func random() -> PassID {
            var g = SystemRandomNumberGenerator()
            var b: [UInt8] = []
            b.reserveCapacity(16)
            for _ in 0..<2 { withUnsafeBytes(of: g.next() as UInt64) { b.append(contentsOf: $0) } }
            return PassID(bytes: b)
        }

        public var description: String {
            bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
        }
    }

    public struct Header: Equatable, Sendable {
        public var job: String
        public var disk: String
        public var blockSize: UInt32
        public var capacity: UInt64
        /// The `.vzmap` generation the replica was at when the pass started. A map with a greater
        /// generation means the pass committed.
        public var startGeneration: UInt64
        public var passID: PassID
        public var createdUnixSeconds: UInt64

        public init(job: String, disk: String, blockSize: UInt32, capacity: UInt64, startGeneration: UInt64,
                    passID: PassID, createdUnixSeconds: UInt64) {
            self.job = job; self.disk = disk; self.blockSize = blockSize; self.capacity = capacity
            self.startGeneration = startGeneration; self.passID = passID; self.createdUnixSeconds = createdUnixSeconds
        }

        /// Number of blocks of the disk (the last one may be short).
        public var blockCount: UInt64 { BlockMap.blockCount(capacity: capacity, blockSize: blockSize) }

        /// The one extent a record at block `index` must cover.
        public func blockExtent(_ index: UInt64) -> Extent {
            let offset = index * UInt64(blockSize)
            return Extent(offset: offset, length: Swift.min(UInt64(blockSize), capacity - offset))
        }
    }

    public enum RecordKind: UInt8, Sendable {
        /// The original bytes follow the record header.
        case data = 1
        /// The original read as zeros (a hole, or zero-filled): restore with writeZeros. No data.
        case zeros = 2
    }

    public struct Record: Equatable, Sendable {
        public var kind: RecordKind
        /// 0, 1, 2, ... in file order; a gap ends the journal.
        public var sequence: UInt64
        public var extent: Extent
        /// The original bytes (kind data), empty for kind zeros.
        public var data: [UInt8]
        /// Where the record starts in the file.
        public var fileOffset: UInt64

        public init(kind: RecordKind, sequence: UInt64, extent: Extent, data: [UInt8], fileOffset: UInt64) {
            self.kind = kind; self.sequence = sequence; self.extent = extent; self.data = data; self.fileOffset = fileOffset
        }

        /// Bytes the record takes in the file.
        public var encodedSize: Int { UndoJournalFormat.recordHeaderSize + data.count }
    }

    // MARK: encoding

    /// The 200-byte file header. Names must be 1...64 bytes of UTF-8 (the writer passes names that
    /// NameRules accepted); anything else is an internal error.
    public static func encodeHeader(_ h: Header) throws -> [UInt8] {
        let job = Array(h.job.utf8), disk = Array(h.disk.utf8)
        for (field, name) in [("jobName", job), ("diskName", disk)] where name.isEmpty || name.count > maxNameLength {
            throw VZError(.internal, ".vzundo header: \(field) must be 1...\(maxNameLength) bytes, got \(name.count)")
        }
        var w = ByteWriter(capacity: headerSize)
        w.raw(magic)
        w.u32(version); w.u32(UInt32(headerSize)); w.u32(h.blockSize); w.u32(0)
        w.u64(h.capacity); w.u64(h.startGeneration); w.u64(h.createdUnixSeconds)
        w.raw(h.passID.bytes)
        w.u8(UInt8(job.count)); w.u8(UInt8(disk.count)); w.u16(0)
        w.raw(job); w.raw([UInt8](repeating: 0, count: maxNameLength - job.count))
        w.raw(disk); w.raw([UInt8](repeating: 0, count: maxNameLength - disk.count))
        w.u32(CRC32C.checksum(w.bytes[0..<headerCRCOffset]))
        return w.bytes
    }

    /// Fills in the record header in `record[0..<48]` for the data already in `record[48...]`
    /// (`dataLength` bytes: `length` for kind data, 0 for kind zeros), including its checksum.
    /// The writer reads the original straight into a reused buffer at offset 48 and then seals it.
    public static func sealRecord(_ record: UnsafeMutableRawBufferPointer, kind: RecordKind, passID: PassID,
                                  sequence: UInt64, extent: Extent) {
        let dataLength = kind == .data ? Int(extent.length) : 0
        precondition(record.count >= recordHeaderSize + dataLength && extent.length <= UInt64(maxRecordLength))
        var w = ByteWriter(capacity: recordHeaderSize)
        w.raw(recordMagic)
        w.u8(kind.rawValue); w.u8(0); w.u16(0)
        w.raw(passID.bytes)
        w.u64(sequence); w.u64(extent.offset); w.u32(UInt32(extent.length))
        let headerCRC = CRC32C.checksum(w.bytes)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: record[recordHeaderSize..<recordHeaderSize + dataLength]),
                                  seed: headerCRC)
        w.u32(crc)
        for (i, b) in w.bytes.enumerated() { record[i] = b }
    }

    /// One whole record (tests, tools). `data` must be `extent.length` bytes for kind data and
    /// empty for kind zeros.
    public static func encodeRecord(kind: RecordKind, passID: PassID, sequence: UInt64, extent: Extent,
                                    data: [UInt8] = []) -> [UInt8] {
        precondition(kind == .zeros ? data.isEmpty : data.count == Int(extent.length))
        var bytes = [UInt8](repeating: 0, count: recordHeaderSize + data.count)
        for (i, b) in data.enumerated() { bytes[recordHeaderSize + i] = b }
        bytes.withUnsafeMutableBytes { sealRecord($0, kind: kind, passID: passID, sequence: sequence, extent: extent) }
        return bytes
    }

    // MARK: decoding

    /// Decodes and checks the file header. Every failure is a `.corruptJournal` error naming the
    /// file, the field and the reason: a `.vzundo` is created by rename with its header complete,
    /// so a bad header is damage, never a torn write.
    public static func decodeHeader<C: Collection>(_ bytes: C, fileName: String) throws -> Header where C.Element == UInt8 {
        let all = Array(bytes.prefix(headerSize))
        var r = ByteReader(all, context: fileName, errorKind: .corruptJournal)
        try r.recordHeader(magic: magic, record: "a .vzundo file", versions: [version])
        let size = try r.u32("headerSize")
        guard size == UInt32(headerSize) else { throw r.fail("headerSize", "\(size), expected \(headerSize)") }
        guard all.count == headerSize else {
            throw VZError(.corruptJournal, "\(fileName): field 'header' at byte 0: the file ends after \(all.count) bytes, inside the \(headerSize)-byte header (truncated)")
        }
        let stored = UInt32(all[headerCRCOffset]) | UInt32(all[headerCRCOffset + 1]) << 8
            | UInt32(all[headerCRCOffset + 2]) << 16 | UInt32(all[headerCRCOffset + 3]) << 24
        let actual = CRC32C.checksum(all[0..<headerCRCOffset])
        guard stored == actual else {
            throw VZError(.corruptJournal, "\(fileName): field 'headerCRC32C' at byte \(headerCRCOffset): checksum mismatch (stored \(hex(stored)), computed \(hex(actual)))")
        }
        let blockSize = try r.u32("blockSize")
        if let why = BlockSize.problem(with: blockSize) { throw r.fail("blockSize", why) }
        let flags = try r.u32("flags")
        guard flags == 0 else { throw r.fail("flags", "unknown flags 0x\(String(flags, radix: 16))") }
        let capacity = try r.u64("capacity")
        guard capacity > 0, capacity <= UInt64(1) << 62 else { throw r.fail("capacity", "\(capacity) bytes is not a disk size") }
        let startGeneration = try r.u64("startGeneration")
        let created = try r.u64("createdUnixSeconds")
        let passID = PassID(bytes: Array(try r.raw(16, "passID")))
        let jobLength = try nameLength(&r, "jobNameLength")
        let diskLength = try nameLength(&r, "diskNameLength")
        let reserved = try r.u16("reserved")
        guard reserved == 0 else { throw r.fail("reserved", "must be 0, is \(reserved)") }
        let job = try name(&r, "jobName", length: jobLength)
        let disk = try name(&r, "diskName", length: diskLength)
        return Header(job: job, disk: disk, blockSize: blockSize, capacity: capacity, startGeneration: startGeneration,
                      passID: passID, createdUnixSeconds: created)
    }

    private static func nameLength(_ r: inout ByteReader, _ field: String) throws -> Int {
        let length = Int(try r.u8(field))
        guard length >= 1, length <= maxNameLength else {
            throw r.fail(field, "\(length) is not a name length of 1...\(maxNameLength)")
        }
        return length
    }

    private static func name(_ r: inout ByteReader, _ field: String, length: Int) throws -> String {
        let start = r.offset
        let padded = Array(try r.raw(maxNameLength, field))
        guard padded[length...].allSatisfy({ $0 == 0 }) else {
            throw VZError(.corruptJournal, "\(r.context): field '\(field)' at byte \(start): non-zero bytes after the \(length)-byte name")
        }
        guard let s = String(validating: padded[0..<length], as: UTF8.self) else {
            throw VZError(.corruptJournal, "\(r.context): field '\(field)' at byte \(start): not valid UTF-8")
        }
        if let why = NameRules.problem(with: s) {
            throw VZError(.corruptJournal, "\(r.context): field '\(field)' at byte \(start): the name \(why)")
        }
        return s
    }

    static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}

/// Reads a `.vzundo` from bytes it is fed, in pieces of any size (swift-nio-ssh style: `append`,
/// then `nextRecord()` until it returns nil, then append more or `finish()`).
///
/// The journal ends at the first record that is incomplete, fails its checksum, or is not the
/// next record of this pass (wrong magic, implausible length, other pass id, sequence gap): that
/// is a torn tail, written but never fsynced, so the writer never overwrote its block. Records
/// before it are valid; nothing after it is ever accepted, even if it looks valid. A record that
/// passes its checksum but breaks the format's rules (misaligned, wrong length, outside the disk,
/// reserved bits set) is not a torn write but damage or a bug: `.corruptJournal`. So is a bad
/// file header.
///
/// Memory is bounded: the decoder buffers at most one record (<= 48 bytes + 8 MiB) plus the bytes
/// of the last `append`; once the journal has ended, further input is counted and dropped.
public struct UndoJournalDecoder {
    /// Why the records stopped before the end of the input.
    public enum TailReason: Equatable, Sendable {
        case truncated          // the input ended inside a record
        case badMagic           // not a record header (garbage)
        case implausibleLength  // unknown kind or a length no record of this journal can have
        case checksumMismatch   // a torn or bit-flipped record
        case otherPass          // a checksummed record of another pass (stale bytes)
        case sequenceGap        // a checksummed record that is not the next one
    }

    public let fileName: String
    public private(set) var header: UndoJournalFormat.Header?
    /// True once no further record can come: the input ended (`finish()`) or a record was bad.
    public private(set) var isEnded = false
    /// Why the journal ended early; nil while it goes on, and when it ended exactly at the end of
    /// the input.
    public private(set) var tail: TailReason?
    /// Bytes of the valid prefix: the header and every accepted record.
    public private(set) var validLength: UInt64 = 0
    /// Bytes after the valid prefix that were ignored (the torn tail), once known.
    public private(set) var ignoredBytes: UInt64 = 0
    /// Records accepted so far.
    public private(set) var recordCount: UInt64 = 0

    private var buffer: [UInt8] = []
    private var start = 0
    private var finished = false

    public init(fileName: String) {
        self.fileName = fileName
    }

    public mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        precondition(!finished, "append after finish")
        if isEnded { ignoredBytes += UInt64(bytes.count); return }
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// No more input will come. Bytes still buffered are a torn tail.
    public mutating func finish() {
        finished = true
    }

    private var available: Int { buffer.count - start }

    private mutating func end(_ reason: TailReason?) -> UndoJournalFormat.Record? {
        isEnded = true
        tail = reason
        ignoredBytes += UInt64(available)
        buffer = []
        start = 0
        return nil
    }

    private func u32(_ i: Int) -> UInt32 {
        UInt32(buffer[i]) | UInt32(buffer[i + 1]) << 8 | UInt32(buffer[i + 2]) << 16 | UInt32(buffer[i + 3]) << 24
    }

    private func u64(_ i: Int) -> UInt64 { UInt64(u32(i)) | UInt64(u32(i + 4)) << 32 }

    /// The next valid record, or nil when more input is needed or the journal has ended
    /// (`isEnded`). Decodes the file header first (then `header` is set). Throws
    /// `.corruptJournal` for a bad header, and for a checksummed record that breaks the rules.
    public mutating func nextRecord() throws -> UndoJournalFormat.Record? {
        if isEnded { return nil }
        guard let header = try readHeader() else { return nil }
        let F = UndoJournalFormat.self
        if available < F.recordHeaderSize {
            if finished { return end(available == 0 ? nil : .truncated) }
            // A prefix that already cannot be a record header ends the journal now.
            for i in 0..<Swift.min(available, 4) where buffer[start + i] != F.recordMagic[i] { return end(.badMagic) }
            return nil
        }
        let h = start
        guard buffer[h..<h + 4].elementsEqual(F.recordMagic) else { return end(.badMagic) }
        guard let kind = UndoJournalFormat.RecordKind(rawValue: buffer[h + 4]) else { return end(.implausibleLength) }
        let length = u32(h + 40)
        guard length >= 1, length <= header.blockSize else { return end(.implausibleLength) }
        let dataLength = kind == .data ? Int(length) : 0
        let total = F.recordHeaderSize + dataLength
        guard available >= total else { return finished ? end(.truncated) : nil }
        let storedCRC = u32(h + F.recordCRCOffset)
        let crc = buffer.withUnsafeBytes { all -> UInt32 in
            let headerCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[h..<h + F.recordCRCOffset]))
            return CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[h + F.recordHeaderSize..<h + total]), seed: headerCRC)
        }
        guard crc == storedCRC else { return end(.checksumMismatch) }
        guard buffer[h + 8..<h + 24].elementsEqual(header.passID.bytes) else { return end(.otherPass) }
        let sequence = u64(h + 24)
        guard sequence == recordCount else { return end(.sequenceGap) }

        // A checksummed record of this pass, in sequence: from here on a violation is damage.
        let offset = u64(h + 32)
        let at = validLength
        /// `fieldOffset`: where the field starts in the record header (Docs/formats.md).
        func bad(_ field: String, _ fieldOffset: UInt64, _ reason: String) -> VZError {
            VZError(.corruptJournal, "\(fileName): record \(sequence) at byte \(at): field '\(field)' at byte \(at + fieldOffset): \(reason)")
        }
        guard buffer[h + 5] == 0, buffer[h + 6] == 0, buffer[h + 7] == 0 else { throw bad("reserved", 5, "must be 0") }
        guard offset < header.capacity else { throw bad("offset", 32, "\(offset) is beyond the disk's \(header.capacity) bytes") }
        guard offset % UInt64(header.blockSize) == 0 else {
            throw bad("offset", 32, "\(offset) is not a multiple of the block size \(header.blockSize)")
        }
        let extent = header.blockExtent(offset / UInt64(header.blockSize))
        guard UInt64(length) == extent.length else {
            throw bad("length", 40, "\(length), but the block at \(offset) is \(extent.length) bytes")
        }
        let data = kind == .data ? Array(buffer[h + F.recordHeaderSize..<h + total]) : []
        start += total
        validLength += UInt64(total)
        recordCount += 1
        if start == buffer.count { buffer.removeAll(keepingCapacity: buffer.count <= 16 << 20); start = 0 }
        return UndoJournalFormat.Record(kind: kind, sequence: sequence, extent: extent, data: data, fileOffset: at)
    }

    private mutating func readHeader() throws -> UndoJournalFormat.Header? {
        if let h = header { return h }
        guard available >= UndoJournalFormat.headerSize else {
            if finished || available >= 8 {
                // Enough to name a bad magic/version/size now, or the input ended: let the header
                // decoder say what is wrong (a short file is "truncated").
                if finished || !(buffer[start..<start + 8].elementsEqual(UndoJournalFormat.magic)) {
                    _ = try UndoJournalFormat.decodeHeader(buffer[start...], fileName: fileName)
                }
            }
            return nil
        }
        let h = try UndoJournalFormat.decodeHeader(buffer[start..<start + UndoJournalFormat.headerSize], fileName: fileName)
        header = h
        start += UndoJournalFormat.headerSize
        validLength = UInt64(UndoJournalFormat.headerSize)
        return h
    }

    /// Decodes a whole journal held in memory (tests, small files): the header, the valid records
    /// and where the valid prefix ends.
    public static func decodeAll(_ bytes: [UInt8], fileName: String) throws
        -> (header: UndoJournalFormat.Header, records: [UndoJournalFormat.Record], validLength: UInt64, tail: TailReason?) {
        var d = UndoJournalDecoder(fileName: fileName)
        d.append(bytes)
        d.finish()
        var records: [UndoJournalFormat.Record] = []
        while let r = try d.nextRecord() { records.append(r) }
        guard let header = d.header else {
            throw VZError(.corruptJournal, "\(fileName): no header")
        }
        return (header, records, d.validLength, d.tail)
    }
}
