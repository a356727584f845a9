import VZCore

/// `JOB/DISK.vzcid`: the CID the target gives the replica's descriptor at a commit, the CID the
/// descriptor had before, and that commit's generation (Docs/formats.md). It is written before
/// the descriptor, so a crash between the two leaves the descriptor at `previousCID`, which is
/// no out-of-band change. Before a pass the target compares the descriptor's CID with both: any
/// other CID means the replica was written out of band (powered on outside a test failover,
/// edited by hand) and its map is not trusted.
///
///     0  8  magic "VZCIDREC"
///     8  4  version (1)
///    12  4  replica CID
///    16  4  previous CID
///    20  8  generation (of the .vzmap committed with this CID)
///    28  4  CRC32C of bytes 0..<28
public struct CIDRecordFile: Equatable, Sendable {
    public static let magic: [UInt8] = Array("VZCIDREC".utf8)
    public static let version: UInt32 = 1
    public static let size = 32

    public var cid: UInt32
    public var previousCID: UInt32
    public var generation: UInt64

    public init(cid: UInt32, previousCID: UInt32, generation: UInt64) {
        self.cid = cid; self.previousCID = previousCID; self.generation = generation
    }

    /// The descriptor's CID is one the target itself wrote.
    public func accepts(_ descriptorCID: UInt32) -> Bool { descriptorCID == cid || descriptorCID == previousCID }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: CIDRecordFile.size)
        w.raw(CIDRecordFile.magic)
        w.u32(CIDRecordFile.version)
        w.u32(cid)
        w.u32(previousCID)
        w.u64(generation)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Every failure is `.corruptMap` (the record is part of the replica's bookkeeping, like the
    /// map) and names the file and the field.
    public static func decode(_ bytes: [UInt8], fileName: String) throws -> CIDRecordFile {
        guard bytes.count == size else {
            throw VZError(.corruptMap, "\(fileName): \(bytes.count) bytes, a CID record has \(size)")
        }
        var r = ByteReader(bytes, context: fileName, errorKind: .corruptMap)
        guard Array(try r.raw(8, "magic")) == magic else { throw r.fail("magic", "not a .vzcid file (expected \"VZCIDREC\")") }
        let v = try r.u32("version")
        guard v == version else { throw r.fail("version", "version \(v) is not supported (this agent reads version \(version))") }
        let cid = try r.u32("cid")
        let previous = try r.u32("previousCID")
        let generation = try r.u64("generation")
        let crc = try r.u32("crc32c")
        let actual = CRC32C.checksum(bytes[0..<28])
        guard crc == actual else {
            throw r.fail("crc32c", "checksum mismatch (stored \(String(format8: crc)), computed \(String(format8: actual)))")
        }
        return CIDRecordFile(cid: cid, previousCID: previous, generation: generation)
    }
}
