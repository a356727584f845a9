import VZCore

/// `JOB/DISK.vzpass`: what `vzrepl-target status` reports about the last committed pass of a disk
/// — when it committed, what it moved, and its pass id (Docs/formats.md §7). Written atomically
/// after the `.vzmap` (the commit point) and the CID record, before the journal is deleted. A
/// crash in between leaves the record of the pass before: its `generation` is then lower than
/// the map's, which `status` reports instead of trusting its numbers.
///
///     0  8  magic "VZPASSRC"
///     8  4  version (1)
///    12  4  reserved (0)
///    16  8  generation (of the .vzmap committed by this pass)
///    24  8  committed, Unix time in milliseconds
///    32  8  started, Unix time in milliseconds (the disk session's openDisk)
///    40  8  scannedBytes (the source's count, from commitDisk)
///    48  8  changedBytes (data written plus zeros punched)
///    56  8  zeroBytes (of changedBytes, zeros punched)
///    64 16  pass id (the source's UUID, protocol 3; 16 zero bytes when the source sent none)
///    80  4  CRC32C of bytes 0..<80
public struct PassRecordFile: Equatable, Sendable {
    public static let magic: [UInt8] = Array("VZPASSRC".utf8)
    public static let version: UInt32 = 1
    public static let size = 84

    public var generation: UInt64
    public var committedUnixMillis: UInt64
    public var startedUnixMillis: UInt64
    public var scannedBytes: UInt64
    public var changedBytes: UInt64
    public var zeroBytes: UInt64
    /// 16 bytes; all zero: none.
    public var passId: [UInt8]

    public init(generation: UInt64, committedUnixMillis: UInt64, startedUnixMillis: UInt64, scannedBytes: UInt64,
                changedBytes: UInt64, zeroBytes: UInt64, passId: [UInt8]?) {
        self.generation = generation; self.committedUnixMillis = committedUnixMillis; self.startedUnixMillis = startedUnixMillis
        self.scannedBytes = scannedBytes; self.changedBytes = changedBytes; self.zeroBytes = zeroBytes
        self.passId = passId.flatMap { $0.count == 16 ? $0 : nil } ?? [UInt8](repeating: 0, count: 16)
    }

    /// The pass id as a UUID string, nil when the source sent none.
    public var passIdString: String? { passId.allSatisfy { $0 == 0 } ? nil : PassIdentifier.string(of: passId) }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: PassRecordFile.size)
        w.raw(PassRecordFile.magic)
        w.u32(PassRecordFile.version)
        w.u32(0)
        for v in [generation, committedUnixMillis, startedUnixMillis, scannedBytes, changedBytes, zeroBytes] { w.u64(v) }
        w.raw(passId)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Every failure is `.corruptMap` (replica bookkeeping, like the map and the CID record) and
    /// names the file and the field.
    public static func decode(_ bytes: [UInt8], fileName: String) throws -> PassRecordFile {
        guard bytes.count == size else {
            throw VZError(.corruptMap, "\(fileName): \(bytes.count) bytes, a pass record has \(size)")
        }
        var r = ByteReader(bytes, context: fileName, errorKind: .corruptMap)
        try r.recordHeader(magic: magic, record: "a .vzpass file", versions: [version])
        let reserved = try r.u32("reserved")
        guard reserved == 0 else { throw r.fail("reserved", "\(reserved), must be 0") }
        let generation = try r.u64("generation")
        let committed = try r.u64("committedUnixMillis")
        let started = try r.u64("startedUnixMillis")
        let scanned = try r.u64("scannedBytes")
        let changed = try r.u64("changedBytes")
        let zero = try r.u64("zeroBytes")
        let passId = Array(try r.raw(16, "passId"))
        try r.trailingCRC32C()
        return PassRecordFile(generation: generation, committedUnixMillis: committed, startedUnixMillis: started,
                              scannedBytes: scanned, changedBytes: changed, zeroBytes: zero, passId: passId)
    }
}
