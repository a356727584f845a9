import VZCore

/// ext4's internal jbd2 journal, read to make a dirty (`needs_recovery`) filesystem safe to map:
/// every block any descriptor block of the journal names (committed or not, current or stale: a
/// superset of what a replay would write) is collected, and a group whose block bitmap is among
/// them stays all active. A group whose bitmap no transaction touched has an on-disk bitmap that
/// replay would not change. Fast commits, an external journal, an indirect-mapped (ext3) journal
/// inode, or anything that does not parse fall back to the whole volume active.
struct ExtJournal {
    static let magic: UInt32 = 0xC03B_3998

    /// The filesystem blocks named by the journal's descriptor blocks, or nil when the journal
    /// is empty (`s_start` 0: nothing to replay).
    static func journaledBlocks(_ sb: ExtFilesystem.Superblock, raw: [UInt8], groupZeroInodeTable: UInt64,
                                window: VolumeWindow) throws -> Set<UInt64>? {
        let f = Fields(raw, "ext superblock")
        if sb.compat & 0x400 != 0 { throw ParseFailure("fast_commit journal is not read") }
        let inum = try f.u32(0xE0)
        guard inum == 8, try f.u32(0xE4) == 0 else { throw ParseFailure("the journal is not the internal inode 8") }
        // Inode 8: group 0, index 7.
        let inode = try window.read(at: groupZeroInodeTable * sb.blockSize + 7 * sb.inodeSize, count: Int(sb.inodeSize))
        let inf = Fields(inode, "journal inode")
        guard try inf.u32(0x20) & 0x80000 != 0 else { throw ParseFailure("the journal inode is not extent-mapped") }
        var extents: [(logical: UInt64, physical: UInt64, length: UInt64)] = []
        try walkExtents(Array(try inf.raw(0x28, 60)), depth: 0, sb: sb, window: window, into: &extents)
        extents.sort { $0.logical < $1.logical }
        func physical(_ logical: UInt64) -> UInt64? {
            for e in extents where logical >= e.logical && logical < e.logical + e.length { return e.physical + logical - e.logical }
            return nil
        }
        guard let j0 = physical(0) else { throw ParseFailure("journal block 0 is not mapped") }
        let js = try window.read(at: j0 * sb.blockSize, count: Int(sb.blockSize))
        func be32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]) }
        guard be32(js, 0) == magic, [3, 4].contains(be32(js, 4)) else { throw ParseFailure("no jbd2 superblock") }
        guard UInt64(be32(js, 12)) == sb.blockSize else { throw ParseFailure("journal block size differs from the filesystem's") }
        let maxlen = UInt64(be32(js, 16)), start = be32(js, 28)
        if start == 0 { return nil }
        let incompat = be32(js, 4) == 4 ? be32(js, 0x28) : 0
        if incompat & 0x20 != 0 { throw ParseFailure("fast_commit journal is not read") }
        let is64 = incompat & 0x2 != 0, v3 = incompat & 0x10 != 0, csum = incompat & 0x18 != 0
        // jbd2 `journal_tag_bytes`: tag3 is 16 bytes; else 12, +2 with csum v2, -4 without 64bit.
        let tagSize = v3 ? 16 : 12 + (incompat & 0x8 != 0 ? 2 : 0) - (is64 ? 0 : 4)
        let bs = Int(sb.blockSize)
        var named = Set<UInt64>()
        var logical: UInt64 = 1
        while logical < maxlen {
            guard let p = physical(logical) else { throw ParseFailure("journal block \(logical) is not mapped") }
            // A run of physically contiguous journal blocks, read up to 1 MiB at once.
            var n: UInt64 = 1
            while logical + n < maxlen, n < UInt64(1 << 20) / sb.blockSize, physical(logical + n) == p + n { n += 1 }
            let chunk = try window.read(at: p * sb.blockSize, count: Int(n) * bs)
            for k in 0..<Int(n) {
                let b = k * bs
                guard be32(chunk, b) == magic, be32(chunk, b + 4) == 1 else { continue }
                var at = b + 12
                let end = b + bs - (csum ? 4 : 0)
                while at + tagSize <= end {
                    var block = UInt64(be32(chunk, at))
                    let flags = v3 ? be32(chunk, at + 4) : UInt32(chunk[at + 6]) << 8 | UInt32(chunk[at + 7])
                    if is64 { block |= UInt64(be32(chunk, at + 8)) << 32 }
                    named.insert(block)
                    at += tagSize + (flags & 0x2 == 0 ? 16 : 0)
                    if flags & 0x8 != 0 { break }
                    guard named.count <= 1 << 22 else { throw ParseFailure("the journal names too many blocks") }
                }
            }
            logical += n
        }
        return named
    }

    /// Collects the leaf extents of an ext4 extent tree (header magic 0xF30A), depth-limited.
    static func walkExtents(_ node: [UInt8], depth: Int, sb: ExtFilesystem.Superblock, window: VolumeWindow,
                            into out: inout [(logical: UInt64, physical: UInt64, length: UInt64)]) throws {
        let f = Fields(node, "extent node")
        guard try f.u16(0) == 0xF30A else { throw ParseFailure("bad extent header") }
        let entries = Int(try f.u16(2)), level = try f.u16(6)
        guard depth <= 5, level <= 5, 12 + entries * 12 <= node.count else { throw ParseFailure("extent node") }
        for i in 0..<entries {
            let e = 12 + i * 12
            if level == 0 {
                var len = UInt64(try f.u16(e + 4))
                if len > 32768 { len -= 32768 }  // an uninitialised extent: still journal blocks
                let phys = UInt64(try f.u16(e + 6)) << 32 | UInt64(try f.u32(e + 8))
                guard phys + len <= sb.blocksCount else { throw ParseFailure("journal extent past the end") }
                out.append((UInt64(try f.u32(e)), phys, len))
                guard out.count <= 1 << 16 else { throw ParseFailure("journal too fragmented") }
            } else {
                let child = UInt64(try f.u16(e + 8)) << 32 | UInt64(try f.u32(e + 4))
                guard child < sb.blocksCount else { throw ParseFailure("extent index past the end") }
                try walkExtents(try window.read(at: child * sb.blockSize, count: Int(sb.blockSize)), depth: depth + 1,
                                sb: sb, window: window, into: &out)
            }
        }
    }
}
