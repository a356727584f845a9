import VZCore

/// ext2/3/4: the free blocks of every group, from its block bitmap, or synthesised for a
/// BLOCK_UNINIT group whose descriptor checksum holds (libext2fs `mark_uninit_bg_group_blocks`).
/// Anything the code does not model (bigalloc, an external journal device, unknown features, a
/// dirty journal) makes the volume all active.
struct ExtFilesystem {
    struct Superblock {
        var blocksCount: UInt64, firstDataBlock: UInt64, blockSize: UInt64, blocksPerGroup: UInt64
        var inodesPerGroup: UInt64, inodeSize: UInt64, state: UInt16
        var compat: UInt32, incompat: UInt32, roCompat: UInt32
        var uuid: [UInt8], reservedGdtBlocks: UInt64, descSize: Int, firstMetaBg: UInt64
        var backupBgs: (UInt32, UInt32), checksumSeed: UInt32

        var has64bit: Bool { incompat & 0x80 != 0 }
        var metaBg: Bool { incompat & 0x10 != 0 }
        var sparseSuper: Bool { roCompat & 0x1 != 0 }
        var sparseSuper2: Bool { compat & 0x200 != 0 }
        var gdtCsum: Bool { roCompat & 0x10 != 0 }
        var metadataCsum: Bool { roCompat & 0x400 != 0 }
        var groups: UInt64 { (blocksCount - firstDataBlock + blocksPerGroup - 1) / blocksPerGroup }
        var descPerBlock: UInt64 { blockSize / UInt64(descSize) }
        var descBlocks: UInt64 { (groups + descPerBlock - 1) / descPerBlock }
        var itableBlocks: UInt64 { (inodesPerGroup * inodeSize + blockSize - 1) / blockSize }
        func groupStart(_ g: UInt64) -> UInt64 { firstDataBlock + g * blocksPerGroup }
        func groupLength(_ g: UInt64) -> UInt64 { Swift.min(blocksPerGroup, blocksCount - groupStart(g)) }
        var flavour: String { incompat & 0x2C0 != 0 || roCompat & 0x408 != 0 ? "ext4" : (compat & 0x4 != 0 ? "ext3" : "ext2") }
    }

    static let magicOffset = 1024 + 0x38
    /// Incompatible features this reader knows do not change where the block bitmaps are or what
    /// their bits mean (compression, 1, is not one): filetype(2) recover(4) meta_bg(0x10) extents(0x40)
    /// 64bit(0x80) mmp(0x100) flex_bg(0x200) ea_inode(0x400) dirdata(0x1000) csum_seed(0x2000)
    /// largedir(0x4000) inline_data(0x8000) encrypt(0x10000) casefold(0x20000).
    static let knownIncompat: UInt32 = 0x3_F7D6
    /// Read-only features likewise; has_snapshot(0x80), bigalloc(0x200) and shared_blocks(0x4000) excluded.
    static let knownRoCompat: UInt32 = 0x1_BD7F

    static func isExt(_ head: [UInt8]) -> Bool {
        head.count >= magicOffset + 2 && head[magicOffset] == 0x53 && head[magicOffset + 1] == 0xEF
    }

    static func parseSuperblock(_ b: [UInt8]) throws -> Superblock {
        let f = Fields(b, "ext superblock")
        guard try f.u16(0x38) == 0xEF53 else { throw ParseFailure("no ext magic") }
        let log = try f.u32(0x18)
        guard log <= 6 else { throw ParseFailure("block size 1024 << \(log) is not supported") }
        let bs = UInt64(1024) << UInt64(log)
        let incompat = try f.u32(0x60), roCompat = try f.u32(0x64), compat = try f.u32(0x5C)
        let is64 = incompat & 0x80 != 0
        var blocks = UInt64(try f.u32(0x04))
        if is64 { blocks |= UInt64(try f.u32(0x150)) << 32 }
        let firstData = UInt64(try f.u32(0x14))
        let bpg = UInt64(try f.u32(0x20))
        let rev = try f.u32(0x4C)
        let inodeSize = rev == 0 ? 128 : UInt64(try f.u16(0x58))
        var descSize = 32
        if is64 {
            descSize = Int(try f.u16(0xFE))
            guard descSize >= 64, descSize <= 1024, descSize & (descSize - 1) == 0 else {
                throw ParseFailure("64bit descriptor size \(descSize) is not a power of two between 64 and 1024")
            }
        }
        guard bpg > 0, bpg <= 8 * bs, bpg % 8 == 0 else { throw ParseFailure("\(bpg) blocks per group do not fit one bitmap block") }
        guard firstData == (bs == 1024 ? 1 : 0) else { throw ParseFailure("first data block \(firstData) with \(bs)-byte blocks") }
        guard blocks > firstData else { throw ParseFailure("\(blocks) blocks") }
        guard inodeSize >= 128, inodeSize <= bs, inodeSize & (inodeSize - 1) == 0 else { throw ParseFailure("inode size \(inodeSize)") }
        return Superblock(blocksCount: blocks, firstDataBlock: firstData, blockSize: bs, blocksPerGroup: bpg,
                          inodesPerGroup: UInt64(try f.u32(0x28)), inodeSize: inodeSize, state: try f.u16(0x3A),
                          compat: compat, incompat: incompat, roCompat: roCompat, uuid: Array(try f.raw(0x68, 16)),
                          reservedGdtBlocks: UInt64(try f.u16(0xCE)), descSize: descSize,
                          firstMetaBg: UInt64(try f.u32(0x104)), backupBgs: (try f.u32(0x24C), try f.u32(0x250)),
                          checksumSeed: try f.u32(0x270))
    }

    /// Maps the filesystem in `window`; free blocks go to `collector` (volume-relative bytes).
    /// - Parameter journalOverlay: map a `needs_recovery` filesystem through its journal
    ///   (ExtJournal) instead of counting it all active.
    static func map(_ window: VolumeWindow, _ collector: inout FreeCollector, journalOverlay: Bool = false) -> ProbeOutcome {
        var name = "ext"
        do {
            let raw = try window.read(at: 1024, count: 1024)
            let sb = try parseSuperblock(raw)
            name = sb.flavour
            let recovering = sb.incompat & 0x4 != 0
            if let why = try policy(sb, raw, window, ignoringRecover: journalOverlay) { return .allActive(name, why) }
            var mapper = GroupMapper(sb: sb, window: window)
            if recovering {
                do {
                    mapper.journaled = try ExtJournal.journaledBlocks(sb, raw: raw, groupZeroInodeTable: try mapper.groupZeroInodeTable(),
                                                                      window: window) ?? []
                } catch {
                    return .allActive(name, "dirty: needs_recovery, and the journal cannot be read (\(error))")
                }
            }
            try mapper.run(&collector)
            return .mapped(name, mapper.warnings)
        } catch {
            return .allActive(name, "corrupt: \(error)")
        }
    }

    /// Why the bitmaps cannot be trusted, or nil.
    static func policy(_ sb: Superblock, _ raw: [UInt8], _ window: VolumeWindow, ignoringRecover: Bool = false) throws -> String? {
        if sb.incompat & 0x8 != 0 { return "unsupported: external journal device" }
        if sb.roCompat & 0x200 != 0 { return "unsupported: bigalloc" }
        if sb.incompat & ~knownIncompat != 0 { return "unsupported: incompatible features 0x\(String(sb.incompat & ~knownIncompat, radix: 16))" }
        if sb.roCompat & ~knownRoCompat != 0 { return "unsupported: read-only features 0x\(String(sb.roCompat & ~knownRoCompat, radix: 16))" }
        if sb.metadataCsum {
            let stored = try Fields(raw, "ext superblock").u32(0x3FC)
            guard Checksums.crc32cRaw(0xFFFF_FFFF, raw[0..<0x3FC]) == stored else { return "corrupt: superblock checksum mismatch" }
        }
        if sb.incompat & 0x4 != 0 && !ignoringRecover { return "dirty: needs_recovery (the journal holds transactions not yet written back)" }
        if sb.state & 0x1 == 0 { return "dirty: not cleanly unmounted (VALID_FS clear)" }
        if sb.state & 0x2 != 0 { return "dirty: errors recorded (ERROR_FS)" }
        guard sb.blocksCount <= window.length / sb.blockSize else {
            return "corrupt: \(sb.blocksCount) blocks of \(sb.blockSize) bytes do not fit the volume (\(window.length) bytes)"
        }
        return nil
    }
}
