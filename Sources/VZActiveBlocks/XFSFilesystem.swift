import VZCore

/// XFS (big-endian): the free space of every allocation group, from its free-space B+tree by
/// block number (bnobt, walked at any depth from the AGF) and its free list (AGFL: reserved free
/// blocks, never read for their contents). v5 superblock, AGF, AGFL and btree blocks must pass
/// their CRC32C and name this filesystem; v4 trees are checked by structure and by the AGF's free
/// block count. A log that cannot be proven clean (XFSLog), a realtime or external log device,
/// unknown features, or anything that does not parse makes the volume all active.
struct XFSFilesystem {
    struct Superblock {
        var blockSize: UInt64, dblocks: UInt64, agBlocks: UInt64, agCount: UInt64, agBlkLog: UInt64
        var sectSize: Int, v5: Bool, uuid: ArraySlice<UInt8>
        /// The internal log: its fsblock number as the superblock gives it, its linear block, its length.
        var logStart: UInt64, logLinear: UInt64, logBlocks: UInt64

        /// Linear block of an AG-relative one; `ag × agblocks`, never the fsblock encoding.
        func linear(_ ag: UInt64, _ agbno: UInt64) -> UInt64 { ag * agBlocks + agbno }
        func agLength(_ ag: UInt64) -> UInt64 { ag == agCount - 1 ? dblocks - ag * agBlocks : agBlocks }
        /// The first blocks of an AG hold its four header sectors (SB, AGF, AGI, AGFL).
        var headerBlocks: UInt64 { (4 * UInt64(sectSize) + blockSize - 1) / blockSize }
    }

    /// Incompatible v5 features that change nothing about the AGF, AGFL or bnobt: ftype(1),
    /// sparse inodes(2), meta_uuid(4), bigtime(8), nrext64(0x20), exchange-range(0x40), parent(0x80).
    static let knownIncompat: UInt32 = 0xEF
    static let needsRepair: UInt32 = 0x10
    /// Read-only-compatible: finobt(1), rmapbt(2), reflink(4), inobtcount(8).
    static let knownRoCompat: UInt32 = 0xF
    static let nullBlock: UInt32 = 0xFFFF_FFFF
    /// Deeper than any bnobt of a 2^31-block AG with 512-byte blocks.
    static let maxLevels: UInt32 = 12

    let window: VolumeWindow
    let sb: Superblock
    private(set) var notes: [String] = []

    static func map(_ window: VolumeWindow, _ collector: inout FreeCollector) -> ProbeOutcome {
        do {
            let first = try window.read(at: 0, count: 512)
            let sectSize = Int(try Fields(first, "XFS superblock").be16(102))
            guard [512, 1024, 2048, 4096, 8192, 16384, 32768].contains(sectSize) else {
                throw ParseFailure("XFS superblock: sector size \(sectSize)")
            }
            let raw = sectSize == 512 ? first : try window.read(at: 0, count: sectSize)
            let sb: Superblock
            switch try parseSuperblock(raw, volumeLength: window.length) {
            case let .success(parsed): sb = parsed
            case let .failure(policy): return .allActive("xfs", policy.description)
            }
            if let why = try XFSLog(window: window, sb: sb).uncleanReason() { return .allActive("xfs", why) }
            var fs = XFSFilesystem(window: window, sb: sb)
            for ag in 0..<sb.agCount { try fs.mapGroup(ag, &collector) }
            return .mapped("xfs", fs.notes)
        } catch {
            return .allActive("xfs", "corrupt: \(error)")
        }
    }

    /// The superblock, or the policy reason (unsupported, dirty) the volume is all active for;
    /// a structure that does not parse throws.
    static func parseSuperblock(_ b: [UInt8], volumeLength: UInt64) throws -> Result<Superblock, ParseFailure> {
        let f = Fields(b, "XFS superblock")
        guard f.matches(0, "XFSB") else { throw ParseFailure("XFS superblock: no XFSB magic") }
        let version = try f.be16(100) & 0xF
        guard version == 4 || version == 5 else { return .failure(ParseFailure("unsupported: XFS superblock version \(version)")) }
        let v5 = version == 5
        if v5 {
            guard try f.u32(224) == crc(b, at: 224) else { throw ParseFailure("XFS superblock: CRC mismatch") }
        }
        let bs = UInt64(try f.be32(4))
        guard bs >= 512, bs <= 65536, bs & (bs - 1) == 0, 1 << UInt64(try f.u8(120)) == bs else {
            throw ParseFailure("XFS superblock: block size \(bs) (log \(try f.u8(120)))")
        }
        let sectSize = Int(try f.be16(102))
        guard 1 << Int(try f.u8(121)) == sectSize, UInt64(sectSize) <= bs, sectSize == b.count else {
            throw ParseFailure("XFS superblock: sector size \(sectSize) with \(bs)-byte blocks")
        }
        let dblocks = try f.be64(8), agBlocks = UInt64(try f.be32(84)), agCount = UInt64(try f.be32(88))
        let agBlkLog = UInt64(try f.u8(124))
        guard agBlocks >= 8, agBlocks < 1 << 31, agBlkLog < 32, agBlocks <= 1 << agBlkLog, agBlocks > (1 << agBlkLog) / 2,
              agCount >= 1, agCount <= 1 << 24 else {
            throw ParseFailure("XFS superblock: \(agCount) AGs of \(agBlocks) blocks (agblklog \(agBlkLog))")
        }
        guard dblocks > (agCount - 1) * agBlocks, dblocks <= agCount * agBlocks else {
            throw ParseFailure("XFS superblock: \(dblocks) blocks do not make \(agCount) AGs of \(agBlocks)")
        }
        guard dblocks <= volumeLength / bs else {
            throw ParseFailure("XFS superblock: \(dblocks) blocks of \(bs) bytes do not fit the volume (\(volumeLength) bytes)")
        }
        guard 4 * UInt64(sectSize) <= (dblocks - (agCount - 1) * agBlocks) * bs else { throw ParseFailure("XFS: the last AG is shorter than its headers") }
        if try f.u8(126) != 0 { return .failure(ParseFailure("corrupt: mkfs did not finish (sb_inprogress)")) }
        if try f.be64(16) != 0 || f.be64(24) != 0 { return .failure(ParseFailure("unsupported: XFS with a realtime device")) }
        let logStart = try f.be64(48)
        if logStart == 0 { return .failure(ParseFailure("unsupported: XFS with an external log (its state cannot be read from this disk)")) }
        var uuid = try f.raw(32, 16)
        if v5 {
            let incompat = try f.be32(216), roCompat = try f.be32(212)
            if incompat & needsRepair != 0 { return .failure(ParseFailure("dirty: XFS needs repair (NEEDSREPAIR)")) }
            if incompat & ~knownIncompat != 0 { return .failure(ParseFailure("unsupported: XFS incompatible features 0x\(String(incompat & ~knownIncompat, radix: 16))")) }
            if roCompat & ~knownRoCompat != 0 { return .failure(ParseFailure("unsupported: XFS read-only features 0x\(String(roCompat & ~knownRoCompat, radix: 16))")) }
            // With meta_uuid the metadata is stamped with the original UUID, kept in sb_meta_uuid.
            if incompat & 0x4 != 0 { uuid = try f.raw(248, 16) }
        }
        let logAG = logStart >> agBlkLog, logAgbno = logStart & ((1 << agBlkLog) - 1), logBlocks = UInt64(try f.be32(96))
        let lastAG = dblocks - (agCount - 1) * agBlocks
        guard logAG < agCount, logAgbno < (logAG == agCount - 1 ? lastAG : agBlocks), logBlocks >= 2,
              logBlocks <= dblocks - (logAG * agBlocks + logAgbno) else {
            throw ParseFailure("XFS superblock: log at fsblock \(logStart) (\(logBlocks) blocks) is outside the filesystem")
        }
        return .success(Superblock(blockSize: bs, dblocks: dblocks, agBlocks: agBlocks, agCount: agCount, agBlkLog: agBlkLog,
                                   sectSize: sectSize, v5: v5, uuid: uuid, logStart: logStart,
                                   logLinear: logAG * agBlocks + logAgbno, logBlocks: logBlocks))
    }

    /// XFS's CRC32C of a structure with its (little-endian) checksum field read as zero.
    static func crc(_ b: [UInt8], at off: Int) -> UInt32 {
        guard off + 4 <= b.count else { return 0 }
        let head = CRC32C.checksum(b[0..<off])
        return CRC32C.checksum(b[(off + 4)...], seed: CRC32C.checksum([0, 0, 0, 0], seed: head))
    }

    /// Frees the AG's bnobt extents and AGFL blocks, once both have checked out.
    mutating func mapGroup(_ ag: UInt64, _ collector: inout FreeCollector) throws {
        let start = sb.linear(ag, 0), length = sb.agLength(ag)
        let what = "XFS AGF \(ag)"
        let agf = try window.read(at: start * sb.blockSize + UInt64(sb.sectSize), count: sb.sectSize)
        let f = Fields(agf, what)
        guard f.matches(0, "XAGF"), try f.be32(4) == 1 else { throw ParseFailure("\(what): no XAGF magic or version 1") }
        if sb.v5 {
            guard try f.u32(216) == XFSFilesystem.crc(agf, at: 216) else { throw ParseFailure("\(what): CRC mismatch") }
            guard try f.raw(64, 16).elementsEqual(sb.uuid) else { throw ParseFailure("\(what): UUID is not the filesystem's") }
        }
        guard try f.be32(8) == ag else { throw ParseFailure("\(what): sequence number \(try f.be32(8))") }
        guard UInt64(try f.be32(12)) == length else { throw ParseFailure("\(what): length \(try f.be32(12)), expected \(length)") }
        let root = UInt64(try f.be32(16)), levels = try f.be32(28)
        guard root >= sb.headerBlocks, root < length, levels >= 1, levels <= XFSFilesystem.maxLevels else {
            throw ParseFailure("\(what): bnobt root \(root) at \(levels) levels")
        }
        var free: [(UInt64, UInt64)] = []
        let counted = try walkBnobt(ag, root: root, levels: levels, agLength: length, into: &free)
        guard counted == UInt64(try f.be32(52)) else {
            throw ParseFailure("\(what): the bnobt holds \(counted) free blocks, the AGF says \(try f.be32(52))")
        }
        let list = try freeList(ag, agf: f, agLength: length)
        for (agbno, count) in free + list.map({ ($0, 1) }) {
            let lo = sb.linear(ag, agbno)
            try guardNotLog(lo, count, what)
            collector.addFree(lo * sb.blockSize, count * sb.blockSize)
        }
    }

    /// A free extent must never cover the internal log: a tree that says so is not trusted.
    func guardNotLog(_ lo: UInt64, _ count: UInt64, _ what: String) throws {
        if lo < sb.logLinear + sb.logBlocks && sb.logLinear < lo + count { throw ParseFailure("\(what): a free extent at block \(lo) covers the log") }
    }

    /// Walks the bnobt depth first, left to right; returns the free blocks counted. Every block is
    /// checked (magic, level, record count, v5 CRC/blkno/owner/UUID, sibling links), records must
    /// ascend without overlapping, and no block is visited twice.
    func walkBnobt(_ ag: UInt64, root: UInt64, levels: UInt32, agLength: UInt64, into free: inout [(UInt64, UInt64)]) throws -> UInt64 {
        let hdr = sb.v5 ? 56 : 16
        let leafMax = (Int(sb.blockSize) - hdr) / 8, nodeMax = (Int(sb.blockSize) - hdr) / 12
        var stack: [(UInt64, UInt32)] = [(root, levels - 1)]
        var visited = Set<UInt64>()
        var lastAtLevel = [UInt32](repeating: XFSFilesystem.nullBlock, count: Int(levels))
        var rightOfLast = [UInt32](repeating: XFSFilesystem.nullBlock, count: Int(levels))
        var nextFree: UInt64 = 0
        var total: UInt64 = 0
        while let (agbno, level) = stack.popLast() {
            let what = "XFS bnobt block \(agbno) of AG \(ag)"
            guard agbno >= sb.headerBlocks, agbno < agLength, visited.insert(agbno).inserted, visited.count <= agLength else {
                throw ParseFailure("\(what): outside the AG or visited twice")
            }
            let b = try window.read(at: sb.linear(ag, agbno) * sb.blockSize, count: Int(sb.blockSize))
            let f = Fields(b, what)
            guard f.matches(0, sb.v5 ? "AB3B" : "ABTB") else { throw ParseFailure("\(what): no \(sb.v5 ? "AB3B" : "ABTB") magic") }
            if sb.v5 {
                guard try f.u32(52) == XFSFilesystem.crc(b, at: 52) else { throw ParseFailure("\(what): CRC mismatch") }
                guard try f.be64(16) == sb.linear(ag, agbno) * (sb.blockSize / 512), try f.be32(48) == ag,
                      try f.raw(32, 16).elementsEqual(sb.uuid) else {
                    throw ParseFailure("\(what): its header names another block, AG or filesystem")
                }
            }
            guard UInt32(try f.be16(4)) == level else { throw ParseFailure("\(what): level \(try f.be16(4)), expected \(level)") }
            let n = Int(try f.be16(6))
            let l = Int(level)
            // Blocks of one level are met left to right: each must link to the one before.
            guard try f.be32(8) == lastAtLevel[l], rightOfLast[l] == (lastAtLevel[l] == XFSFilesystem.nullBlock ? XFSFilesystem.nullBlock : UInt32(agbno)) else {
                throw ParseFailure("\(what): sibling links do not match the tree")
            }
            lastAtLevel[l] = UInt32(agbno); rightOfLast[l] = try f.be32(12)
            if level == 0 {
                guard n <= leafMax, n > 0 || levels == 1 else { throw ParseFailure("\(what): \(n) records") }
                for i in 0..<n {
                    let start = UInt64(try f.be32(hdr + 8 * i)), count = UInt64(try f.be32(hdr + 8 * i + 4))
                    guard count > 0, start >= nextFree, start >= sb.headerBlocks, start + count <= agLength else {
                        throw ParseFailure("\(what): record \(i) (\(start)+\(count)) is out of order or outside the AG")
                    }
                    nextFree = start + count
                    total += count
                    free.append((start, count))
                }
            } else {
                guard n >= 1, n <= nodeMax else { throw ParseFailure("\(what): \(n) keys") }
                var children: [(UInt64, UInt32)] = []
                var lastKey: UInt32 = 0
                for i in 0..<n {
                    let key = try f.be32(hdr + 8 * i)
                    guard i == 0 || key > lastKey else { throw ParseFailure("\(what): keys out of order") }
                    lastKey = key
                    children.append((UInt64(try f.be32(hdr + 8 * nodeMax + 4 * i)), level - 1))
                }
                stack += children.reversed()
            }
        }
        for (l, right) in rightOfLast.enumerated() where right != XFSFilesystem.nullBlock {
            throw ParseFailure("XFS bnobt of AG \(ag): the last block of level \(l) links right to \(right)")
        }
        return total
    }

    /// The AGFL's live entries (`flfirst` … `fllast`, circular). They are free blocks held back
    /// for the trees, so their contents are never needed; if the count does not match the ring
    /// (an AGFL written with the other padding of the struct) they simply stay active.
    mutating func freeList(_ ag: UInt64, agf f: Fields, agLength: UInt64) throws -> [UInt64] {
        let what = "XFS AGFL \(ag)"
        let first = Int(try f.be32(40)), last = Int(try f.be32(44)), count = Int(try f.be32(48))
        let hdr = sb.v5 ? 36 : 0
        let size = (sb.sectSize - hdr) / 4
        guard first < size, last < size, count <= size else { throw ParseFailure("\(what): first \(first), last \(last), count \(count) of \(size)") }
        guard count > 0 else { return [] }
        guard (last - first + size) % size + 1 == count else {
            notes.append("AG \(ag): the free list's count does not match its ring; its \(count) blocks stay active")
            return []
        }
        let b = try window.read(at: sb.linear(ag, 0) * sb.blockSize + 3 * UInt64(sb.sectSize), count: sb.sectSize)
        let l = Fields(b, what)
        if sb.v5 {
            guard l.matches(0, "XAFL"), try l.be32(4) == ag, try l.raw(8, 16).elementsEqual(sb.uuid) else {
                throw ParseFailure("\(what): no XAFL magic, or another AG or filesystem")
            }
            guard try l.u32(32) == XFSFilesystem.crc(b, at: 32) else { throw ParseFailure("\(what): CRC mismatch") }
        }
        var out: [UInt64] = []
        for k in 0..<count {
            let bno = UInt64(try l.be32(hdr + 4 * ((first + k) % size)))
            guard bno >= sb.headerBlocks, bno < agLength else { throw ParseFailure("\(what): entry \(bno) is outside the AG") }
            out.append(bno)
        }
        return out
    }
}
