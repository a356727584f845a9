import VZCore

/// `JOB/DISK.vzcid`: the CID the target gives the replica's descriptor at a commit, the CID the
/// descriptor had before, that commit's generation, and the source chain the pass was read from
/// (Docs/formats.md §4). It is written before the descriptor, so a crash between the two leaves
/// the descriptor at `previousCID`, which is no out-of-band change. Before a pass the target
/// compares the descriptor's CID with both: any other CID means the replica was written out of
/// band (powered on outside a test failover, edited by hand) and its map is not trusted.
///
/// Version 2 (written now):
///
///     0  8  magic "VZCIDREC"
///     8  4  version (2)
///    12  4  replica CID
///    16  4  previous CID
///    20  8  generation (of the .vzmap committed with this CID)
///    28  4  flags: bit 0 = the source chain is known (the source spoke protocol 3); others 0
///    32  2  linkCount (0 ... 255; 0 when the chain is not known, or the source is not a VMDK)
///    34     linkCount links, leaf first: u16 fileLength (1 ... 1024), file (UTF-8), u32 CID, u32 parentCID
///   end-4 4 CRC32C of every byte before it
///
/// Version 1 (still read): bytes 0 ..< 28 as above with version 1, then the CRC32C of bytes
/// 0 ..< 28 at 28: 32 bytes, no chain.
public struct CIDRecordFile: Equatable, Sendable {
    public static let magic: [UInt8] = Array("VZCIDREC".utf8)
    public static let version: UInt32 = 2
    public static let version1Size = 32
    /// The largest valid record: the fixed fields, 255 links at their longest, the CRC.
    public static let maxSize = 34 + SourceChainLink.maxLinks * (2 + SourceChainLink.maxFileBytes + 8) + 4
    static let chainKnownFlag: UInt32 = 1

    public var cid: UInt32
    public var previousCID: UInt32
    public var generation: UInt64
    /// The source chain, leaf first; nil when the source did not say (a protocol 1 or 2 source,
    /// a version 1 record); empty for a source that is not a VMDK (a raw image, a device).
    public var chain: [SourceChainLink]?

    public init(cid: UInt32, previousCID: UInt32, generation: UInt64, chain: [SourceChainLink]? = nil) {
        self.cid = cid; self.previousCID = previousCID; self.generation = generation; self.chain = chain
    }

    /// The descriptor's CID is one the target itself wrote.
    public func accepts(_ descriptorCID: UInt32) -> Bool { descriptorCID == cid || descriptorCID == previousCID }

    /// Why `chain` cannot be recorded, or nil (the session checks a received chain with this).
    public static func problem(with chain: [SourceChainLink]) -> String? {
        guard chain.count <= SourceChainLink.maxLinks else { return "\(chain.count) links, more than \(SourceChainLink.maxLinks)" }
        for (i, l) in chain.enumerated() {
            let n = l.file.utf8.count
            guard n >= 1, n <= SourceChainLink.maxFileBytes else {
                return "link \(i): a file name of \(n) bytes (1 to \(SourceChainLink.maxFileBytes))"
            }
        }
        return nil
    }

    /// Version 2. The chain must pass `problem(with:)`.
    public func encode() -> [UInt8] {
        let links = chain ?? []
        var w = ByteWriter(capacity: 38 + links.count * 32)
        w.raw(CIDRecordFile.magic)
        w.u32(CIDRecordFile.version)
        w.u32(cid)
        w.u32(previousCID)
        w.u64(generation)
        w.u32(chain == nil ? 0 : CIDRecordFile.chainKnownFlag)
        w.u16(UInt16(links.count))
        for l in links {
            w.string(l.file)
            w.u32(l.cid)
            w.u32(l.parentCID)
        }
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Every failure is `.corruptMap` (the record is part of the replica's bookkeeping, like the
    /// map) and names the file and the field.
    public static func decode(_ bytes: [UInt8], fileName: String) throws -> CIDRecordFile {
        guard bytes.count >= version1Size, bytes.count <= maxSize else {
            throw VZError(.corruptMap, "\(fileName): \(bytes.count) bytes, a CID record has \(version1Size) to \(maxSize)")
        }
        var r = ByteReader(bytes, context: fileName, errorKind: .corruptMap)
        let v = try r.recordHeader(magic: magic, record: "a .vzcid file", versions: [1, version])
        let cid = try r.u32("cid")
        let previous = try r.u32("previousCID")
        let generation = try r.u64("generation")
        var chain: [SourceChainLink]?
        if v == 2 {
            let flags = try r.u32("flags")
            guard flags & ~chainKnownFlag == 0 else { throw r.fail("flags", "unknown flag bits \(String(format8: flags & ~chainKnownFlag))") }
            let count = Int(try r.u16("linkCount"))
            guard count <= SourceChainLink.maxLinks else { throw r.fail("linkCount", "\(count) links, more than \(SourceChainLink.maxLinks)") }
            guard flags & chainKnownFlag != 0 || count == 0 else { throw r.fail("linkCount", "\(count) links, but flags say the chain is not known") }
            var links: [SourceChainLink] = []
            for i in 0..<count {
                let file = try r.string("links[\(i)].file", maxLength: SourceChainLink.maxFileBytes)
                guard !file.isEmpty else { throw r.fail("links[\(i)].file", "is empty") }
                links.append(SourceChainLink(file: file, cid: try r.u32("links[\(i)].cid"), parentCID: try r.u32("links[\(i)].parentCID")))
            }
            chain = flags & chainKnownFlag != 0 ? links : nil
        }
        try r.trailingCRC32C()
        return CIDRecordFile(cid: cid, previousCID: previous, generation: generation, chain: chain)
    }
}
