import VZCore

/// Walks an ext filesystem's group descriptors and block bitmaps (ExtFilesystem).
struct GroupMapper {
    typealias Superblock = ExtFilesystem.Superblock
    let sb: Superblock
    let window: VolumeWindow
    private(set) var warnings: [String] = []
    /// Blocks a dirty journal names (ExtJournal): a group whose block bitmap is one of them stays active.
    var journaled = Set<UInt64>()
    private var descCache: (block: UInt64, bytes: [UInt8])?
    /// The metadata seed of metadata_csum.
    private let csumSeed: UInt32

    init(sb: Superblock, window: VolumeWindow) {
        self.sb = sb
        self.window = window
        csumSeed = sb.incompat & 0x2000 != 0 ? sb.checksumSeed : Checksums.crc32cRaw(0xFFFF_FFFF, sb.uuid)
    }

    struct Descriptor {
        var blockBitmap: UInt64, inodeBitmap: UInt64, inodeTable: UInt64, flags: UInt16
        var checksumOK: Bool
        var bitmapChecksum: UInt32
    }

    func hasSuper(_ g: UInt64) -> Bool {
        if g == 0 { return true }
        if sb.sparseSuper2 { return g == UInt64(sb.backupBgs.0) || g == UInt64(sb.backupBgs.1) }
        if g <= 1 || !sb.sparseSuper { return true }
        if g & 1 == 0 { return false }
        for base: UInt64 in [3, 5, 7] {
            var p = base
            while p < g { p *= base }
            if p == g { return true }
        }
        return false
    }

    /// The block holding descriptor block `i` (libext2fs `ext2fs_descriptor_block_loc2`).
    func descriptorBlock(_ i: UInt64) -> UInt64 {
        if !sb.metaBg || i < sb.firstMetaBg { return sb.firstDataBlock + 1 + i }
        let g = sb.descPerBlock * i
        return sb.groupStart(g) + (hasSuper(g) ? 1 : 0)
    }

    private mutating func descriptor(_ g: UInt64) throws -> Descriptor {
        let block = descriptorBlock(g / sb.descPerBlock)
        guard block < sb.blocksCount else { throw ParseFailure("descriptor block \(block) of group \(g) is past the end") }
        if descCache?.block != block {
            descCache = (block, try window.read(at: block * sb.blockSize, count: Int(sb.blockSize)))
        }
        let bytes = descCache!.bytes
        let at = Int(g % sb.descPerBlock) * sb.descSize
        let f = Fields(bytes, at: at, "group descriptor \(g)")
        var bb = UInt64(try f.u32(0)), ib = UInt64(try f.u32(4)), it = UInt64(try f.u32(8))
        if sb.descSize >= 64 {
            bb |= UInt64(try f.u32(0x20)) << 32; ib |= UInt64(try f.u32(0x24)) << 32; it |= UInt64(try f.u32(0x28)) << 32
        }
        let stored = try f.u16(0x1E)
        let desc = Array(try f.raw(0, sb.descSize))
        var gle = [UInt8](repeating: 0, count: 4)
        for k in 0..<4 { gle[k] = UInt8(truncatingIfNeeded: UInt32(truncatingIfNeeded: g) >> (8 * UInt32(k))) }
        var ok = true
        if sb.metadataCsum {
            var c = Checksums.crc32cRaw(csumSeed, gle)
            c = Checksums.crc32cRaw(c, desc[0..<0x1E])
            c = Checksums.crc32cRaw(c, [0, 0])
            if sb.descSize > 0x20 { c = Checksums.crc32cRaw(c, desc[0x20..<sb.descSize]) }
            ok = UInt16(truncatingIfNeeded: c) == stored
        } else if sb.gdtCsum {
            var c = Checksums.crc16(0xFFFF, sb.uuid)
            c = Checksums.crc16(c, gle)
            c = Checksums.crc16(c, desc[0..<0x1E])
            if sb.descSize > 0x20 { c = Checksums.crc16(c, desc[0x20..<sb.descSize]) }
            ok = c == stored
        }
        var bitmapCsum = UInt32(try f.u16(0x18))
        if sb.descSize >= 0x3C { bitmapCsum |= UInt32(try f.u16(0x38)) << 16 }
        return Descriptor(blockBitmap: bb, inodeBitmap: ib, inodeTable: it, flags: try f.u16(0x12), checksumOK: ok,
                          bitmapChecksum: bitmapCsum)
    }

    mutating func groupZeroInodeTable() throws -> UInt64 { try descriptor(0).inodeTable }

    mutating func run(_ collector: inout FreeCollector) throws {
        let groups = sb.groups
        // Every group's own metadata, wherever flex_bg put it: never free, whatever a bitmap says.
        var descriptors: [Descriptor] = []
        descriptors.reserveCapacity(Int(groups))
        var metadata = ExtentSet()
        for g in 0..<groups {
            let d = try descriptor(g)
            for (start, count) in [(d.blockBitmap, UInt64(1)), (d.inodeBitmap, 1), (d.inodeTable, sb.itableBlocks)] {
                guard start < sb.blocksCount, count <= sb.blocksCount - start else {
                    throw ParseFailure("group \(g): metadata at block \(start) (+\(count)) is past the end (\(sb.blocksCount) blocks)")
                }
                metadata.insert(Extent(offset: start, length: count))
            }
            descriptors.append(d)
        }
        let csum = sb.metadataCsum || sb.gdtCsum
        var badGroups = 0, journalGroups = 0
        for g in 0..<groups {
            let d = descriptors[Int(g)]
            if csum && !d.checksumOK { badGroups += 1; continue }
            if journaled.contains(d.blockBitmap) { journalGroups += 1; continue }
            let start = sb.groupStart(g), length = sb.groupLength(g)
            var free: ExtentSet
            if csum && d.flags & 0x2 != 0 {
                free = ExtentSet([Extent(offset: start, length: length)]).subtracting(synthesisedUsed(g))
            } else {
                let bitmap = try window.read(at: d.blockBitmap * sb.blockSize, count: Int(sb.blockSize))
                if sb.metadataCsum {
                    var c = Checksums.crc32cRaw(csumSeed, bitmap[0..<Int(sb.blocksPerGroup / 8)])
                    if sb.descSize < 0x3C { c &= 0xFFFF }
                    if c != d.bitmapChecksum { badGroups += 1; continue }
                }
                free = ExtentSet()
                var i: UInt64 = 0
                while i < length {
                    let byte = bitmap[Int(i >> 3)]
                    if byte == 0xFF && i & 7 == 0 { i += 8; continue }
                    if byte & (1 << UInt8(i & 7)) == 0 {
                        var j = i + 1
                        while j < length {
                            if j & 7 == 0 && j + 8 <= length && bitmap[Int(j >> 3)] == 0 { j += 8; continue }
                            if bitmap[Int(j >> 3)] & (1 << UInt8(j & 7)) != 0 { break }
                            j += 1
                        }
                        free.insert(Extent(offset: start + i, length: j - i))
                        i = j
                    } else {
                        i += 1
                    }
                }
            }
            // Only the metadata inside this group can cut its free runs.
            let here = ExtentSet(metadata.pieces(within: Extent(offset: start, length: length)))
            for e in free.subtracting(here) {
                collector.addFree(e.offset * sb.blockSize, e.length * sb.blockSize)
            }
        }
        if journalGroups > 0 {
            warnings.append("needs_recovery: \(journalGroups) block group(s) whose bitmap the journal holds stay active")
        }
        if badGroups > 0 {
            warnings.append("\(badGroups) block group(s) failed their descriptor or bitmap checksum and stay active")
        }
    }

    /// The blocks a BLOCK_UNINIT group uses (libext2fs `ext2fs_super_and_bgd_loc2` and
    /// `mark_uninit_bg_group_blocks`): superblock and descriptor copies, reserved GDT blocks, the
    /// meta_bg descriptor block. The group's bitmaps and inode table are in `metadata` already.
    func synthesisedUsed(_ g: UInt64) -> ExtentSet {
        var used = ExtentSet()
        var groupBlock = sb.groupStart(g)
        if groupBlock == 0 && sb.blockSize == 1024 { groupBlock = 1 }
        let superCopy = hasSuper(g)
        if superCopy { used.insert(Extent(offset: groupBlock, length: 1)) }
        let dpb = sb.descPerBlock
        let metaGroup = g / dpb
        if !sb.metaBg || metaGroup < sb.firstMetaBg {
            if superCopy {
                let old = sb.metaBg ? sb.firstMetaBg : sb.descBlocks + sb.reservedGdtBlocks
                used.insert(Extent(offset: groupBlock + 1, length: old))
            }
        } else {
            let r = g % dpb
            if r == 0 || r == 1 || r == dpb - 1 {
                used.insert(Extent(offset: groupBlock + (superCopy ? 1 : 0), length: 1))
            }
        }
        return used
    }
}
