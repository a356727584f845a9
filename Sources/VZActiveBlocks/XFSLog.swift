import VZCore

/// Whether an XFS internal log is provably clean, decided the way the kernel does at mount
/// (`xlog_find_head`, `xlog_check_unmount_rec` in fs/xfs/xfs_log_recover.c): every 512-byte log
/// block carries the cycle (pass) it was written in; the head is where the cycle drops; the record
/// right before the head must be a lone unmount record (written at unmount and at freeze, so a
/// quiesced snapshot is clean). A crash-consistent snapshot of a mounted XFS has none there.
/// Log writes can complete out of order (up to 8 in-flight buffers of 256 KiB), so the blocks
/// after the head, as far as those can reach, must all be older than the unmount record: a newer
/// one means the filesystem was written after it. Anything else is "dirty".
struct XFSLog {
    let window: VolumeWindow
    /// Byte offset of the log in the volume, and its length in 512-byte blocks.
    let start: UInt64
    let blocks: Int64

    static let headerMagic: UInt32 = 0xFEED_BABE
    /// 8 log buffers of 256 KiB, plus their extended headers, in 512-byte blocks.
    static let inFlightBlocks: Int64 = 8 * (512 + 8) + 64
    /// An unmount record is its header(s) plus data padded to the log stripe unit (≤ 256 KiB).
    static let maxUnmountRecordBlocks: Int64 = 512 + 8 + 8

    /// The superblock's parse has checked the log lies within the filesystem.
    init(window: VolumeWindow, sb: XFSFilesystem.Superblock) {
        self.window = window
        start = sb.logLinear * sb.blockSize
        blocks = Int64(sb.logBlocks * sb.blockSize / 512)
    }

    /// `count` log blocks from logical block `first` (wrapping at both ends of the log).
    func read(_ first: Int64, _ count: Int64) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Int(count) * 512)
        var p = first, left = count
        while left > 0 {
            let phys = ((p % blocks) + blocks) % blocks
            let n = Swift.min(left, blocks - phys)
            out += try window.read(at: start + UInt64(phys) * 512, count: Int(n) * 512)
            p += n; left -= n
        }
        return out
    }

    /// The cycle a block was written in: a record header's `h_cycle`, or the first word of a data
    /// block (the log stamps it there, saving the original in the header).
    static func cycle(_ b: [UInt8], _ i: Int) throws -> UInt32 {
        let f = Fields(b, at: i * 512, "XFS log block")
        let w = try f.be32(0)
        return w == headerMagic ? try f.be32(4) : w
    }

    func cycle(at p: Int64) throws -> UInt32 { try XFSLog.cycle(try read(p, 1), 0) }

    /// nil when the log is clean, else the reason (starting "dirty:").
    func uncleanReason() throws -> String? {
        let n = blocks
        let c0 = try cycle(at: 0)
        if c0 == 0 { return "dirty: the XFS log was never written (its head cannot be found)" }
        // The head: the first block of an older cycle than block 0 (or the end of the log).
        var head = n
        if try cycle(at: n - 1) != c0 {
            var lo: Int64 = 0, hi = n - 1
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2
                if try cycle(at: mid) == c0 { lo = mid } else { hi = mid }
            }
            head = hi
        }
        // Blocks at logical positions below 0 are the end of the log, written one cycle earlier.
        func expected(_ q: Int64) -> UInt32 { q >= 0 ? c0 : c0 &- 1 }

        let back = Swift.min(n - 1, XFSLog.maxUnmountRecordBlocks)
        let before = try read(head - back, back)
        var record: Int64?
        for i in stride(from: Int(back) - 1, through: 0, by: -1) where try Fields(before, at: i * 512, "XFS log block").be32(0) == XFSLog.headerMagic {
            record = head - back + Int64(i); break
        }
        guard let r = record else { return "dirty: no XFS log record before the log head" }
        let h = Fields(before, at: Int(r - (head - back)) * 512, "XFS log record header")
        let version = try h.be32(8), length = Int64(try h.be32(12)), ops = try h.be32(40), size = Int64(try h.be32(320))
        let hblks: Int64 = version & 2 != 0 && size > 32768 ? (size + 32767) / 32768 : 1
        guard try h.be32(4) == expected(r), version == 1 || version == 2, r + hblks + (length + 511) / 512 == head,
              ops == 1, r + hblks < head else {
            return "dirty: the XFS log does not end with an unmount record (a crash-consistent snapshot of a mounted filesystem)"
        }
        let i0 = Int(r - (head - back))
        for i in i0..<Int(back) where try XFSLog.cycle(before, i) != expected(head - back + Int64(i)) {
            return "dirty: the XFS log's last record is torn"
        }
        let op = Fields(before, at: (i0 + Int(hblks)) * 512, "XFS log operation header")
        // xlog_op_header: tid, len, clientid (XFS_LOG 0xAA), flags (XLOG_UNMOUNT_TRANS 0x20).
        guard try op.u8(8) == 0xAA, try op.u8(9) & 0x20 != 0 else {
            return "dirty: the XFS log does not end with an unmount record (a crash-consistent snapshot of a mounted filesystem)"
        }
        // Nothing written after the unmount record, as far as out-of-order log writes can reach.
        let reach = Swift.min(XFSLog.inFlightBlocks, n - (head - r))
        if reach > 0 {
            let after = try read(head, reach)
            for i in 0..<Int(reach) {
                let q = head + Int64(i), c = try XFSLog.cycle(after, i)
                if q < n ? c >= c0 : c > c0 { return "dirty: the XFS log was written after its unmount record" }
            }
        }
        return nil
    }
}
