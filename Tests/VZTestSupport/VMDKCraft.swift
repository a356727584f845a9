import Foundation

/// VMDK files built byte by byte from the layouts of VMDK-FORMATS.md, for what qemu-img cannot
/// write (VMware's GD-at-end stream, COWD, SEsparse) and for damaged files. Independent of the
/// readers under test: nothing here imports VZFormats.
public enum VMDKCraft {
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func padded(_ b: [UInt8], to multiple: Int = 512) -> [UInt8] {
        b + [UInt8](repeating: 0, count: (multiple - b.count % multiple) % multiple)
    }
    static func put(_ bytes: [UInt8], into file: inout [UInt8], at offset: Int) {
        if file.count < offset + bytes.count { file += [UInt8](repeating: 0, count: offset + bytes.count - file.count) }
        file.replaceSubrange(offset..<offset + bytes.count, with: bytes)
    }

    public static func descriptor(createType: String, cid: UInt32, parentCID: UInt32 = 0xFFFF_FFFF,
                                  parentHint: String? = nil, extents: [String], lineEnding: String = "\n") -> String {
        var lines = ["# Disk DescriptorFile", "version=1", "encoding=\"UTF-8\"", "CID=\(String(cid, radix: 16))",
                     "parentCID=\(String(parentCID, radix: 16))", "createType=\"\(createType)\""]
        if let h = parentHint { lines.append("parentFileNameHint=\"\(h)\"") }
        lines += ["", "# Extent description"] + extents + ["", "# The Disk Data Base", "#DDB", "",
                  "ddb.adapterType = \"lsilogic\"", "ddb.virtualHWVersion = \"14\"", ""]
        return lines.joined(separator: lineEnding)
    }

    /// The 512-byte KDMV header.
    public static func sparseHeader(version: UInt32 = 1, flags: UInt32 = 0x1, capacity: UInt64, grain: UInt64 = 128,
                                    descriptorOffset: UInt64 = 0, descriptorSize: UInt64 = 0, gtes: UInt32 = 512,
                                    rgd: UInt64 = 0, gd: UInt64, overhead: UInt64, compress: UInt16 = 0) -> [UInt8] {
        var h = Array("KDMV".utf8) + le32(version) + le32(flags) + le64(capacity) + le64(grain)
        h += le64(descriptorOffset) + le64(descriptorSize) + le32(gtes) + le64(rgd) + le64(gd) + le64(overhead)
        h += [0, 0x0A, 0x20, 0x0D, 0x0A] + [UInt8(compress & 0xFF), UInt8(compress >> 8)]
        return padded(h)
    }

    /// A monolithicSparse file (version 1, 64 KiB grains, one GD, preallocated GTs, no redundant
    /// GD) with its descriptor embedded at sector 1; `grains` maps a grain index to 64 KiB.
    /// `zeroed` grain indices get GTE 1 (and the header version 2 with flag 0x4).
    public static func monolithicSparse(capacitySectors: UInt64, descriptor: String?, grains: [Int: [UInt8]],
                                        zeroed: Set<Int> = []) -> [UInt8] {
        let grain: UInt64 = 128
        let gdes = Int((capacitySectors + 512 * grain - 1) / (512 * grain))
        let descSectors: UInt64 = descriptor == nil ? 0 : 20
        let gd = 1 + descSectors
        let gdSectors = UInt64((gdes * 4 + 511) / 512)
        let gtStart = gd + gdSectors
        let overhead = (gtStart + UInt64(gdes) * 4 + grain - 1) / grain * grain
        var file = sparseHeader(version: zeroed.isEmpty ? 1 : 2, flags: zeroed.isEmpty ? 0x1 : 0x5, capacity: capacitySectors,
                                descriptorOffset: descriptor == nil ? 0 : 1, descriptorSize: descSectors, gd: gd, overhead: overhead)
        if let d = descriptor { put(Array(d.utf8), into: &file, at: 512) }
        for i in 0..<gdes { put(le32(UInt32(gtStart) + UInt32(i) * 4), into: &file, at: Int(gd) * 512 + i * 4) }
        put([UInt8](repeating: 0, count: Int(overhead) * 512 - file.count), into: &file, at: file.count)
        for idx in zeroed { put(le32(1), into: &file, at: Int(gtStart) * 512 + idx * 4) }
        for (idx, data) in grains.sorted(by: { $0.key < $1.key }) {
            let sector = file.count / 512
            put(le32(UInt32(sector)), into: &file, at: Int(gtStart) * 512 + idx * 4)
            file += padded(data, to: 65536)
        }
        return file
    }

    /// A zlib stream (RFC 1950) of stored deflate blocks: compresses nothing, but is valid
    /// input to any inflater, so no compressor is needed to craft compressed grains.
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]
        var i = 0
        repeat {
            let n = min(65535, data.count - i)
            let final: UInt8 = i + n == data.count ? 1 : 0
            out += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            out += data[i..<i + n]
            i += n
        } while i < data.count
        var a: UInt32 = 1, b: UInt32 = 0
        for x in data { a = (a + UInt32(x)) % 65521; b = (b + a) % 65521 }
        let adler = b << 16 | a
        return out + [UInt8(adler >> 24), UInt8((adler >> 16) & 0xFF), UInt8((adler >> 8) & 0xFF), UInt8(adler & 0xFF)]
    }

    /// VMware's streamOptimized layout (ovftool): header with gdOffset = GD_AT_END, descriptor at
    /// sector 1, grain markers from sector 128, a GT marker and GT after each table's grains, a
    /// GD marker and GD, a footer marker and footer (the header with the real gdOffset), EOS.
    public static func vmwareStream(capacitySectors: UInt64, descriptor: String, grains: [Int: [UInt8]]) -> [UInt8] {
        let grain: UInt64 = 128
        let gdes = Int((capacitySectors + 512 * grain - 1) / (512 * grain))
        let flags: UInt32 = 0x30001
        func header(gd: UInt64) -> [UInt8] {
            sparseHeader(version: 3, flags: flags, capacity: capacitySectors, descriptorOffset: 1, descriptorSize: 20,
                         gd: gd, overhead: 128, compress: 1)
        }
        var file = header(gd: 0xFFFF_FFFF_FFFF_FFFF)
        put(Array(descriptor.utf8), into: &file, at: 512)
        put([UInt8](repeating: 0, count: 128 * 512 - file.count), into: &file, at: file.count)
        var gdEntries = [UInt32](repeating: 0, count: gdes)
        for t in 0..<gdes {
            var gt = [UInt32](repeating: 0, count: 512)
            for (idx, data) in grains.sorted(by: { $0.key < $1.key }) where idx / 512 == t {
                gt[idx % 512] = UInt32(file.count / 512)
                let z = zlibStored(data)
                file += padded(le64(UInt64(idx) * grain) + le32(UInt32(z.count)) + z)
            }
            if gt.allSatisfy({ $0 == 0 }) { continue }
            file += padded(le64(4) + le32(0) + le32(1))      // GT marker
            gdEntries[t] = UInt32(file.count / 512)
            file += gt.flatMap(le32)
        }
        let gdSectors = UInt64((gdes * 4 + 511) / 512)
        file += padded(le64(gdSectors) + le32(0) + le32(2))  // GD marker
        let gd = UInt64(file.count / 512)
        file += padded(gdEntries.flatMap(le32))
        file += padded(le64(1) + le32(0) + le32(3))          // footer marker
        file += header(gd: gd)
        file += [UInt8](repeating: 0, count: 512)           // EOS
        return file
    }

    /// A COWD (vmfsSparse) delta with 512-byte grains: `sectors` maps a sector to its 512 bytes.
    public static func cowd(capacitySectors: UInt64, sectors: [UInt64: [UInt8]]) -> [UInt8] {
        let gdes = Int((capacitySectors + 4095) / 4096)
        let gdSectors = (gdes * 4 + 511) / 512
        var file = Array("COWD".utf8) + le32(1) + le32(3) + le32(UInt32(capacitySectors)) + le32(1) + le32(4) + le32(UInt32(gdes))
        file += le32(0)  // freeSector, patched below
        file = padded(file, to: 2048)
        file += [UInt8](repeating: 0, count: gdSectors * 512)
        var gtOf: [Int: Int] = [:]
        for (sector, data) in sectors.sorted(by: { $0.key < $1.key }) {
            let t = Int(sector / 4096)
            if gtOf[t] == nil {
                gtOf[t] = file.count
                put(le32(UInt32(file.count / 512)), into: &file, at: 2048 + t * 4)
                file += [UInt8](repeating: 0, count: 4096 * 4)
            }
            put(le32(UInt32(file.count / 512)), into: &file, at: gtOf[t]! + Int(sector % 4096) * 4)
            file += padded(data)
        }
        put(le32(UInt32(file.count / 512)), into: &file, at: 28)
        return file
    }

    public enum SEGrain {
        case data([UInt8])   // 4096 bytes
        case zero, unmapped
    }

    /// An SEsparse delta (4 KiB grains, 4096-entry GTs): `grains` maps a grain index to its
    /// state. Data grains are stored at grain slots starting from `firstSlot` (use ≥ 4096 to
    /// exercise the split index encoding). GTs are handed out in reverse order of the GD.
    public static func seSparse(capacitySectors: UInt64, grains: [Int: SEGrain], firstSlot: Int = 4090,
                                replayJournal: UInt64 = 0, gdeTag: UInt64 = 0x1000_0000_0000_0000) -> [UInt8] {
        let gtCount = Int((capacitySectors / 8 + 4095) / 4096)
        let gdSectors = UInt64((gtCount * 8 + 511) / 512)
        let gtArea = UInt64(gtCount) * 64
        let volatileAt: UInt64 = 1, journalHeader: UInt64 = 2, journal: UInt64 = 4, gd: UInt64 = 8
        let gts = gd + gdSectors
        let bitmap = gts + gtArea, backmap = bitmap + 1
        let grainsAt = (backmap + 1 + 7) / 8 * 8
        let slots = UInt64(firstSlot + grains.count + 1)
        var h = le64(0xCAFEBABE) + le64(0x0000_0002_0000_0001) + le64(capacitySectors) + le64(8) + le64(64) + le64(0)
        h += le64(0) + le64(0) + le64(0) + le64(0)
        for (o, s) in [(volatileAt, 1), (journalHeader, 2), (journal, 2), (gd, gdSectors), (gts, gtArea), (bitmap, 1),
                       (backmap, 1), (grainsAt, slots * 8)] as [(UInt64, UInt64)] {
            h += le64(o) + le64(s)
        }
        var file = padded(h)
        put(padded(le64(0xCAFECAFE) + le64(0) + le64(0) + le64(replayJournal)), into: &file, at: Int(volatileAt) * 512)
        put([UInt8](repeating: 0, count: 512), into: &file, at: Int(backmap) * 512)
        var usedTables: [Int: Int] = [:]
        var nextSlot = firstSlot
        for (idx, g) in grains.sorted(by: { $0.key < $1.key }) {
            let t = idx / 4096
            if usedTables[t] == nil {
                let tableIndex = gtCount - 1 - usedTables.count
                usedTables[t] = tableIndex
                put(le64(gdeTag | UInt64(tableIndex)), into: &file, at: Int(gd) * 512 + t * 8)
            }
            let entry: UInt64
            switch g {
            case .zero: entry = 0x2 << 60
            case .unmapped: entry = 0x1 << 60
            case .data(let bytes):
                let slot = UInt64(nextSlot)
                nextSlot += 1
                entry = 0x3 << 60 | (slot & 0xFFF) << 48 | slot >> 12
                put(padded(bytes, to: 4096), into: &file, at: Int(grainsAt + slot * 8) * 512)
            }
            let gtAt = Int(gts + UInt64(usedTables[t]!) * 64) * 512
            put(le64(entry), into: &file, at: gtAt + (idx % 4096) * 8)
        }
        put([UInt8](repeating: 0, count: max(0, Int(grainsAt + slots * 8) * 512 - file.count)), into: &file, at: file.count)
        return file
    }
}
