import VZCore

/// NTFS: the volume bitmap ($Bitmap, MFT record 6), found through $MFT's own runlist, with
/// fixups checked on every record. A hibernated Windows (NTFSHibernation), a dirty volume
/// ($Volume flags), an unclean $LogFile (a crash-consistent snapshot), an attribute list, a sparse, compressed or encrypted $Bitmap, or
/// anything that does not parse makes the volume all active. The tail after the last whole
/// cluster (it holds the backup boot sector) stays active.
struct NTFSFilesystem {
    let window: VolumeWindow
    let cluster: UInt64
    let clusters: UInt64
    let recordSize: Int
    let mftLCN: UInt64
    private var mftRuns: [Run] = []

    struct Run { var vcn: UInt64, lcn: UInt64?, length: UInt64 }

    struct Attribute {
        var type: UInt32, nonResident: Bool, nameLength: UInt8, flags: UInt16
        var bytes: ArraySlice<UInt8>
    }

    init(_ window: VolumeWindow, boot: [UInt8]) throws {
        self.window = window
        let f = Fields(boot, "NTFS boot sector")
        let bps = UInt64(try f.u16(0x0B))
        guard [256, 512, 1024, 2048, 4096].contains(bps) else { throw ParseFailure("\(bps) bytes per sector") }
        let raw = try f.u8(0x0D)
        let spc: UInt64
        if raw <= 0x80 {
            spc = UInt64(raw)
            guard spc > 0, spc & (spc - 1) == 0 else { throw ParseFailure("\(raw) sectors per cluster") }
        } else {
            guard 256 - Int(raw) <= 12 else { throw ParseFailure("sectors per cluster code 0x\(String(raw, radix: 16))") }
            spc = 1 << UInt64(256 - Int(raw))
        }
        cluster = bps * spc
        clusters = try f.u64(0x28) / spc
        guard clusters > 0, clusters <= window.length / cluster else {
            throw ParseFailure("\(clusters) clusters of \(cluster) bytes do not fit the volume (\(window.length) bytes)")
        }
        mftLCN = try f.u64(0x30)
        guard mftLCN < clusters else { throw ParseFailure("$MFT at LCN \(mftLCN) is past the volume") }
        let rec = Int8(bitPattern: try f.u8(0x40))
        let size: UInt64 = rec > 0 ? UInt64(rec) * cluster : (-Int(rec) >= 9 && -Int(rec) <= 16 ? 1 << UInt64(-Int(rec)) : 0)
        guard size >= 512, size <= 65536, size % 512 == 0 else { throw ParseFailure("MFT record size code \(rec)") }
        recordSize = Int(size)
    }

    static func map(_ window: VolumeWindow, _ collector: inout FreeCollector) -> ProbeOutcome {
        do {
            let boot = try window.read(at: 0, count: 512)
            var fs = try NTFSFilesystem(window, boot: boot)
            // Record 0 ($MFT) sits at the $MFT LCN; its unnamed $DATA maps the whole MFT.
            let mft = try fs.fixedRecord(try window.read(at: fs.mftLCN * fs.cluster, count: fs.recordSize), number: 0)
            fs.mftRuns = try fs.runs(of: try fs.unnamedData(mft, number: 0))
            if let why = try fs.hibernationReason() { return .allActive("ntfs", why) }
            if let why = try fs.dirtyReason() { return .allActive("ntfs", why) }
            let bitmap = try fs.unnamedData(try fs.record(6), number: 6)
            try fs.mapBitmap(bitmap, &collector)
            return .mapped("ntfs", [])
        } catch {
            return .allActive("ntfs", "corrupt: \(error)")
        }
    }

    /// Applies the update-sequence fixups (stride 512 whatever the sector size) and checks the
    /// record header; a mismatch means a torn write.
    func fixedRecord(_ raw: [UInt8], number: Int) throws -> [UInt8] {
        var b = raw
        let f = Fields(b, "MFT record \(number)")
        guard f.matches(0, "FILE") else { throw ParseFailure("MFT record \(number) has no FILE signature") }
        try applyFixups(&b, what: "MFT record \(number)")
        guard try f.u16(0x16) & 0x1 != 0 else { throw ParseFailure("MFT record \(number) is not in use") }
        return b
    }

    func applyFixups(_ b: inout [UInt8], what: String) throws {
        let f = Fields(b, what)
        let usa = Int(try f.u16(4)), count = Int(try f.u16(6))
        guard count >= 2, count - 1 == b.count / 512, usa >= 8, usa + 2 * count <= b.count else {
            throw ParseFailure("\(what): update sequence array (\(count) at \(usa)) does not fit \(b.count) bytes")
        }
        let usn = try f.u16(usa)
        for i in 1..<count {
            let at = i * 512 - 2
            guard try f.u16(at) == usn else { throw ParseFailure("\(what): fixup mismatch in sector \(i) (torn write)") }
            b[at] = b[usa + 2 * i]; b[at + 1] = b[usa + 2 * i + 1]
        }
    }

    /// Record `n` of the MFT, through $MFT's runlist.
    func record(_ n: Int) throws -> [UInt8] {
        try fixedRecord(try readStream(mftRuns, offset: UInt64(n) * UInt64(recordSize), count: recordSize, limit: nil), number: n)
    }

    func attributes(_ rec: [UInt8], number: Int) throws -> [Attribute] {
        let f = Fields(rec, "MFT record \(number)")
        var at = Int(try f.u16(0x14))
        let used = Int(try f.u32(0x18))
        guard used <= rec.count else { throw ParseFailure("MFT record \(number): \(used) bytes in use of \(rec.count)") }
        var out: [Attribute] = []
        while at + 8 <= used {
            let type = try f.u32(at)
            if type == 0xFFFF_FFFF { return out }
            let length = Int(try f.u32(at + 4))
            guard length >= 24, at + length <= used else { throw ParseFailure("MFT record \(number): attribute at \(at) of \(length) bytes") }
            out.append(Attribute(type: type, nonResident: try f.u8(at + 8) != 0, nameLength: try f.u8(at + 9),
                                 flags: try f.u16(at + 0xC), bytes: rec[at..<(at + length)]))
            at += length
        }
        throw ParseFailure("MFT record \(number): no end marker")
    }

    /// The unnamed, non-resident $DATA of a record that has no attribute list.
    func unnamedData(_ rec: [UInt8], number: Int) throws -> Attribute {
        let attrs = try attributes(rec, number: number)
        if attrs.contains(where: { $0.type == 0x20 }) { throw ParseFailure("MFT record \(number) has an attribute list (not followed)") }
        guard let data = attrs.first(where: { $0.type == 0x80 && $0.nameLength == 0 }) else {
            throw ParseFailure("MFT record \(number) has no unnamed $DATA")
        }
        guard data.nonResident else { throw ParseFailure("MFT record \(number): $DATA is resident") }
        guard data.flags & 0xC0FF == 0 else { throw ParseFailure("MFT record \(number): $DATA is compressed, sparse or encrypted") }
        return data
    }

    func runs(of a: Attribute) throws -> [Run] {
        let b = Array(a.bytes)
        let f = Fields(b, "runlist")
        guard try f.u64(0x10) == 0 else { throw ParseFailure("$DATA does not start at VCN 0") }
        var at = Int(try f.u16(0x20))
        var vcn: UInt64 = 0
        var lcn: Int64 = 0
        var out: [Run] = []
        while at < b.count {
            let h = b[at]
            if h == 0 { return out }
            let lenBytes = Int(h & 0x0F), offBytes = Int(h >> 4)
            guard lenBytes >= 1, lenBytes <= 8, offBytes <= 8, at + 1 + lenBytes + offBytes <= b.count else {
                throw ParseFailure("runlist header 0x\(String(h, radix: 16)) at \(at)")
            }
            var length: UInt64 = 0
            for k in 0..<lenBytes { length |= UInt64(b[at + 1 + k]) << (8 * UInt64(k)) }
            guard length > 0, length <= clusters else { throw ParseFailure("run of \(length) clusters") }
            var delta: Int64 = 0
            if offBytes > 0 {
                var u: UInt64 = 0
                for k in 0..<offBytes { u |= UInt64(b[at + 1 + lenBytes + k]) << (8 * UInt64(k)) }
                if offBytes < 8 && b[at + lenBytes + offBytes] & 0x80 != 0 { u |= ~UInt64(0) << (8 * UInt64(offBytes)) }
                delta = Int64(bitPattern: u)
                let (next, overflow) = lcn.addingReportingOverflow(delta)
                guard !overflow, next >= 0, UInt64(next) < clusters, length <= clusters - UInt64(next) else {
                    throw ParseFailure("run at LCN \(next) (+\(length)) is outside the volume")
                }
                lcn = next
                out.append(Run(vcn: vcn, lcn: UInt64(lcn), length: length))
            } else {
                out.append(Run(vcn: vcn, lcn: nil, length: length))
            }
            vcn += length
            at += 1 + lenBytes + offBytes
        }
        throw ParseFailure("runlist without an end")
    }

    /// Bytes `[offset, offset + count)` of a stream, through its runs; a sparse run fails.
    func readStream(_ runs: [Run], offset: UInt64, count: Int, limit: UInt64?) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        var pos = offset
        let end = offset + UInt64(count)
        while pos < end {
            let vcn = pos / cluster
            guard let run = runs.first(where: { vcn >= $0.vcn && vcn < $0.vcn + $0.length }) else {
                throw ParseFailure("stream byte \(pos) is past its runlist")
            }
            guard let lcn = run.lcn else { throw ParseFailure("stream byte \(pos) is in a sparse run") }
            let runEnd = (run.vcn + run.length) * cluster
            let n = Swift.min(end, runEnd) - pos
            out += try window.read(at: (lcn + vcn - run.vcn) * cluster + pos % cluster, count: Int(n))
            pos += n
        }
        return out
    }

    /// Why the bitmap cannot be trusted: $Volume's dirty or chkdsk flags, or a $LogFile that
    /// still holds transactions.
    func dirtyReason() throws -> String? {
        let vol = try attributes(try record(3), number: 3)
        guard let info = vol.first(where: { $0.type == 0x70 && !$0.nonResident }) else { throw ParseFailure("$Volume has no volume information") }
        let f = Fields(Array(info.bytes), "$VOLUME_INFORMATION")
        let valueOffset = Int(try f.u16(0x14))
        let flags = try f.u16(valueOffset + 10)
        if flags & 0x0001 != 0 { return "dirty: the volume is marked dirty (VOLUME_IS_DIRTY)" }
        if flags & 0xC000 != 0 { return "dirty: chkdsk flags set (0x\(String(flags, radix: 16)))" }
        let log = try unnamedData(try record(2), number: 2)
        var page = try readStream(try runs(of: log), offset: 0, count: 4096, limit: nil)
        if page.allSatisfy({ $0 == 0xFF }) { return nil }
        let pf = Fields(page, "$LogFile restart page")
        guard pf.matches(0, "RSTR") || pf.matches(0, "CHKD") else { return "dirty: $LogFile restart page unreadable" }
        try applyFixups(&page, what: "$LogFile restart page")
        let fixed = Fields(page, "$LogFile restart page")
        let ra = Int(try fixed.u16(0x18))
        let inUse = try fixed.u16(ra + 0x0C), raFlags = try fixed.u16(ra + 0x0E)
        if inUse == 0xFFFF || raFlags & 0x2 != 0 { return nil }
        return "dirty: the $LogFile holds transactions not yet checkpointed (a crash-consistent snapshot)"
    }

    /// Clears, through `collector`, every cluster whose $Bitmap bit is 0.
    func mapBitmap(_ a: Attribute, _ collector: inout FreeCollector) throws {
        let f = Fields(Array(a.bytes), "$Bitmap $DATA")
        let dataSize = try f.u64(0x30), initialized = try f.u64(0x38)
        guard initialized <= dataSize, dataSize * 8 >= clusters, dataSize <= clusters / 8 + 1 << 20 else {
            throw ParseFailure("$Bitmap sizes (data \(dataSize), initialized \(initialized)) do not cover \(clusters) clusters")
        }
        let runs = try runs(of: a)
        let needed = (clusters + 7) / 8
        var offset: UInt64 = 0
        let chunk: UInt64 = 1 << 20
        while offset < needed {
            let n = Swift.min(chunk, needed - offset)
            // Past initialized_size the bitmap reads as zeros: those clusters are free.
            let stored = offset < initialized ? Swift.min(n, initialized - offset) : 0
            var bytes = stored > 0 ? try readStream(runs, offset: offset, count: Int(stored), limit: nil) : []
            bytes += [UInt8](repeating: 0, count: Int(n - stored))
            bytes.withUnsafeBufferPointer { buf in
                var j = 0
                while j < buf.count {
                    let first = (offset + UInt64(j)) * 8
                    // Eight bytes at a time: 64 clusters all free or all in use.
                    if j + 8 <= buf.count {
                        let word = UnsafeRawPointer(buf.baseAddress! + j).loadUnaligned(as: UInt64.self)
                        if word == ~0 { j += 8; continue }
                        if word == 0 && first + 64 <= clusters { collector.addFree(first * cluster, 64 * cluster); j += 8; continue }
                    }
                    let byte = buf[j]
                    if byte != 0xFF {
                        for bit in 0..<8 where byte & (1 << UInt8(bit)) == 0 {
                            let lcn = first + UInt64(bit)
                            if lcn < clusters { collector.addFree(lcn * cluster, cluster) }
                        }
                    }
                    j += 1
                }
            }
            offset += n
        }
    }
}
