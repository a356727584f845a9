import VZCore

/// Grain tables held in memory: per directory entry the index of its table (or -1), and the
/// tables present, concatenated. Loaded once at open from tables checked to lie inside the file
/// and not to overlap each other or the metadata before them, so their total size is bounded
/// by the file's, never by a header field.
struct GrainTables<Entry: FixedWidthInteger> {
    let tableOfGDE: [Int32]
    let tables: [Entry]
    let perTable: Int

    /// `tableSectors[i]` is directory entry i's table start sector (nil: none).
    init(fileName: String, fileSize: UInt64, tableStarts: [UInt64?], perTable: Int, metadataEnd: UInt64,
         read: (UInt64, Int) throws -> [UInt8]) throws {
        let tableBytes = UInt64(perTable * MemoryLayout<Entry>.size)
        var starts: [(sector: UInt64, gde: Int)] = []
        for (i, s) in tableStarts.enumerated() {
            guard let s else { continue }
            guard s >= metadataEnd, s <= fileSize / 512, tableBytes <= fileSize - s * 512 else {
                throw VZError(.sourceIO, "\(fileName): grain directory entry \(i): grain table at sector \(s) lies outside the file (\(fileSize) bytes) or inside its header")
            }
            starts.append((s, i))
        }
        let sorted = starts.sorted { $0.sector < $1.sector }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.sector * 512 < a.sector * 512 + tableBytes {
            throw VZError(.sourceIO, "\(fileName): grain directory entries \(a.gde) and \(b.gde): their grain tables (sectors \(a.sector) and \(b.sector)) overlap (a loop in the metadata)")
        }
        var index = [Int32](repeating: -1, count: tableStarts.count)
        var tables: [Entry] = []
        tables.reserveCapacity(starts.count * perTable)
        for (n, s) in starts.enumerated() {
            let raw = try read(s.sector * 512, Int(tableBytes))
            raw.withUnsafeBytes { p in
                for j in 0..<perTable {
                    tables.append(Entry(littleEndian: p.loadUnaligned(fromByteOffset: j * MemoryLayout<Entry>.size, as: Entry.self)))
                }
            }
            index[s.gde] = Int32(n)
        }
        self.tableOfGDE = index
        self.tables = tables
        self.perTable = perTable
    }

    func hasTable(forGrain g: UInt64) -> Bool {
        let t = Int(g / UInt64(perTable))
        return t < tableOfGDE.count && tableOfGDE[t] >= 0
    }

    func entry(_ g: UInt64) -> Entry {
        let t = Int(g / UInt64(perTable))
        guard t < tableOfGDE.count, tableOfGDE[t] >= 0 else { return 0 }
        return tables[Int(tableOfGDE[t]) * perTable + Int(g % UInt64(perTable))]
    }

    /// Every grain below `grains` whose entry is present, with its index.
    func forEachPresent(below grains: UInt64, _ body: (UInt64, Entry) throws -> Void) rethrows {
        for (t, n) in tableOfGDE.enumerated() where n >= 0 {
            let first = UInt64(t * perTable)
            for j in 0..<perTable where first + UInt64(j) < grains {
                try body(first + UInt64(j), tables[Int(n) * perTable + j])
            }
        }
    }
}

/// Builds zero / unallocated extent sets from per-grain states.
struct AllocationBuilder {
    var zero: [Extent] = [], unallocated: [Extent] = []
    let grainBytes: UInt64, byteCount: UInt64

    mutating func add(_ g: UInt64, zero isZero: Bool) {
        let start = g * grainBytes
        let len = min(grainBytes, byteCount - start)
        if isZero { append(&zero, start, len) } else { append(&unallocated, start, len) }
    }

    func append(_ list: inout [Extent], _ offset: UInt64, _ length: UInt64) {
        if let last = list.last, last.end == offset { list[list.count - 1].length += length } else {
            list.append(Extent(offset: offset, length: length))
        }
    }

    /// Unallocated = everything not data and not zero.
    func result(data: [Extent]) -> (zero: ExtentSet, unallocated: ExtentSet) {
        let all = ExtentSet([Extent(offset: 0, length: byteCount)])
        let z = ExtentSet(zero)
        return (z, all.subtracting(z).subtracting(ExtentSet(data)))
    }
}

/// A `VMFSSPARSE` extent: an ESXi COWD redo log (`-delta.vmdk`), VMDK-FORMATS.md §3.1.
public final class COWDExtent: VMDKExtentReader {
    let access: VMDKFileAccess
    public let fileName: String
    public let byteCount: UInt64
    let grainBytes: UInt64
    let grainSectors: UInt64
    let tables: GrainTables<UInt32>
    public static let gtEntries = 4096

    public init(access: VMDKFileAccess, fileName: String, sectors: UInt64, descriptor: String) throws {
        self.access = access
        self.fileName = fileName
        let size = try access.size(of: fileName)
        func fail(_ field: String, _ why: String) -> VZError { VZError(.sourceIO, "\(fileName): COWD header field '\(field)': \(why)") }
        guard size >= 2048 else { throw VZError(.sourceIO, "\(fileName): \(size) bytes, shorter than a COWD header (2048)") }
        let h = try access.read(fileName, at: 0, count: 2048)
        guard Array(h[0..<4]) == Array("COWD".utf8) else { throw fail("magicNumber", "not COWD") }
        let version = h.u32le(at: 4)
        let numSectors = UInt64(h.u32le(at: 12))
        let grain = UInt64(h.u32le(at: 16))
        let gdOffset = UInt64(h.u32le(at: 20))
        let gdes = UInt64(h.u32le(at: 24))
        guard version == 1 else { throw fail("version", "\(version) is not 1") }
        guard numSectors > 0 else { throw fail("numSectors", "0") }
        guard grain > 0, grain <= 2048, grain & (grain - 1) == 0 else { throw fail("grainSize", "\(grain) sectors is not a power of two up to 2048") }
        let coverage = UInt64(COWDExtent.gtEntries) * grain
        guard gdes == (numSectors + coverage - 1) / coverage else {
            throw fail("numGDEntries", "\(gdes), but \(numSectors) sectors in grain tables of \(coverage) need \((numSectors + coverage - 1) / coverage)")
        }
        guard sectors <= numSectors else {
            throw VZError(.sourceIO, "\(descriptor): extent '\(fileName)' field 'sectors': \(sectors) sectors, but the COWD file holds \(numSectors)")
        }
        guard gdOffset >= 4, gdOffset <= size / 512, gdes * 4 <= size - gdOffset * 512 else {
            throw fail("gdOffset", "a grain directory of \(gdes) entries at sector \(gdOffset) lies outside the file (\(size) bytes)")
        }
        let gd = try access.read(fileName, at: gdOffset * 512, count: Int(gdes) * 4)
        let starts: [UInt64?] = (0..<Int(gdes)).map { i in
            let e = UInt64(gd.u32le(at: i * 4))
            return e == 0 ? nil : e
        }
        let gdEnd = gdOffset + (gdes * 4 + 511) / 512
        tables = try GrainTables(fileName: fileName, fileSize: size, tableStarts: starts, perTable: COWDExtent.gtEntries,
                                 metadataEnd: gdEnd) { try access.read(fileName, at: $0, count: $1) }
        grainSectors = grain
        grainBytes = grain * 512
        byteCount = sectors * 512
        let bytes = grainBytes
        try tables.forEachPresent(below: (byteCount + bytes - 1) / bytes) { g, e in
            if e != 0 && (UInt64(e) < gdEnd || UInt64(e) * 512 + bytes > size) {
                throw VZError(.sourceIO, "\(fileName): grain table entry for grain \(g): sector \(e) lies outside the file (\(size) bytes) or inside its header")
            }
        }
    }

    public func grainRemainder(at offset: UInt64) -> UInt64 { min(grainBytes - offset % grainBytes, byteCount - offset) }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead {
        let e = tables.entry(offset / grainBytes)
        if e == 0 { return .unallocated }
        try access.read(fileName, at: UInt64(e) * 512 + offset % grainBytes, into: buffer)
        return .data
    }

    public func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet) {
        var b = AllocationBuilder(grainBytes: grainBytes, byteCount: byteCount)
        var data: [Extent] = []
        tables.forEachPresent(below: (byteCount + grainBytes - 1) / grainBytes) { g, e in
            if e != 0 { b.append(&data, g * grainBytes, min(grainBytes, byteCount - g * grainBytes)) }
        }
        return b.result(data: data)
    }
}

/// A `SESPARSE` extent: an ESXi SEsparse redo log (`-sesparse.vmdk`), VMDK-FORMATS.md §3.2.
/// 4 KiB grains, 4096 64-bit entries per table: unallocated (parent), unmapped and zero
/// (zeros), allocated (a grain slot, with the split index encoding).
public final class SESparseExtent: VMDKExtentReader {
    let access: VMDKFileAccess
    public let fileName: String
    public let byteCount: UInt64
    let grainsOffset: UInt64
    let tables: GrainTables<UInt64>
    static let grainBytes: UInt64 = 4096

    public init(access: VMDKFileAccess, fileName: String, sectors: UInt64, descriptor: String) throws {
        self.access = access
        self.fileName = fileName
        let size = try access.size(of: fileName)
        func fail(_ field: String, _ why: String) -> VZError { VZError(.sourceIO, "\(fileName): SEsparse header field '\(field)': \(why)") }
        guard size >= 1024 else { throw VZError(.sourceIO, "\(fileName): \(size) bytes, too short for an SEsparse header") }
        let h = try access.read(fileName, at: 0, count: 512)
        func f(_ o: Int) -> UInt64 { h.u64le(at: o) }
        guard f(0) == 0xCAFEBABE else { throw fail("magic", "not CAFEBABE") }
        guard f(8) == 0x0000_0002_0000_0001 else { throw fail("version", "0x\(String(f(8), radix: 16)) is not 2.1") }
        let capacity = f(0x10)
        guard capacity > 0, capacity <= VMDKDescriptor.maxSectors else { throw fail("capacity", "\(capacity) sectors") }
        guard f(0x18) == 8 else { throw fail("grain_size", "\(f(0x18)) is not 8 sectors") }
        guard f(0x20) == 64 else { throw fail("grain_table_size", "\(f(0x20)) is not 64 sectors") }
        guard f(0x28) == 0 else { throw fail("flags", "0x\(String(f(0x28), radix: 16)): unknown flags") }
        guard sectors <= capacity else {
            throw VZError(.sourceIO, "\(descriptor): extent '\(fileName)' field 'sectors': \(sectors) sectors, but the SEsparse file holds \(capacity)")
        }
        let fileSectors = size / 512
        func region(_ o: Int, _ name: String) throws -> (UInt64, UInt64) {
            let off = f(o), len = f(o + 8)
            guard off <= fileSectors, len <= fileSectors - off else {
                throw fail(name, "\(len) sectors at sector \(off) lie outside the file (\(size) bytes)")
            }
            return (off, len)
        }
        let (volatile, _) = try region(0x50, "volatile_header_offset")
        let (gdOff, gdLen) = try region(0x80, "grain_dir_offset")
        let (gtOff, gtLen) = try region(0x90, "grain_tables_offset")
        let grainsOff = f(0xC0)
        guard grainsOff <= fileSectors else { throw fail("grains_offset", "sector \(grainsOff) is outside the file (\(size) bytes)") }
        let v = try access.read(fileName, at: volatile * 512, count: 512)
        guard v.u64le(at: 0) == 0xCAFECAFE else { throw fail("volatile header magic", "not CAFECAFE") }
        guard v.u64le(at: 0x18) == 0 else {
            throw VZError(.sourceIO, "\(fileName): SEsparse volatile header field 'replay_journal' is set: the delta is dirty (ESXi did not close it); open the VM on ESXi to replay its journal, then replicate")
        }
        let gtCount = (capacity / 8 + 4095) / 4096
        guard gdLen * 512 / 8 >= gtCount else {
            throw fail("grain_dir_size", "\(gdLen) sectors hold \(gdLen * 64) entries, the capacity needs \(gtCount)")
        }
        let gd = try access.read(fileName, at: gdOff * 512, count: Int(gtCount) * 8)
        let tableSlots = gtLen / 64
        var starts: [UInt64?] = []
        for i in 0..<Int(gtCount) {
            let e = gd.u64le(at: i * 8)
            if e == 0 { starts.append(nil); continue }
            guard e >> 32 == 0x1000_0000 else {
                throw VZError(.sourceIO, "\(fileName): SEsparse grain directory entry \(i): 0x\(String(e, radix: 16)) is not a grain table reference (tag 0x1)")
            }
            let index = e & 0xFFFF_FFFF
            guard index < tableSlots else {
                throw VZError(.sourceIO, "\(fileName): SEsparse grain directory entry \(i): grain table \(index) is past the \(tableSlots) tables of the file")
            }
            starts.append(gtOff + index * 64)
        }
        tables = try GrainTables(fileName: fileName, fileSize: size, tableStarts: starts, perTable: 4096, metadataEnd: 1) {
            try access.read(fileName, at: $0, count: $1)
        }
        grainsOffset = grainsOff
        byteCount = sectors * 512
        let grains = (byteCount + 4095) / 4096
        try tables.forEachPresent(below: grains) { g, e in
            switch e >> 60 {
            case 0:
                guard e == 0 else { throw VZError(.sourceIO, "\(fileName): SEsparse grain table entry for grain \(g): 0x\(String(e, radix: 16)) is unallocated with bits set") }
            case 1, 2: break
            case 3:
                let slot = SESparseExtent.slot(e)
                guard slot <= (size / 4096), (grainsOff + slot * 8) * 512 + 4096 <= size else {
                    throw VZError(.sourceIO, "\(fileName): SEsparse grain table entry for grain \(g): grain slot \(slot) lies outside the file (\(size) bytes)")
                }
            default:
                throw VZError(.sourceIO, "\(fileName): SEsparse grain table entry for grain \(g): type \(e >> 60) is not a grain state")
            }
        }
    }

    /// bits 59..48 hold the low 12 bits of the slot, bits 47..0 the high ones.
    static func slot(_ e: UInt64) -> UInt64 { ((e >> 48) & 0xFFF) | ((e & 0x0000_FFFF_FFFF_FFFF) << 12) }

    public func grainRemainder(at offset: UInt64) -> UInt64 { min(4096 - offset % 4096, byteCount - offset) }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead {
        let e = tables.entry(offset / 4096)
        switch e >> 60 {
        case 0: return .unallocated
        case 3:
            try access.read(fileName, at: (grainsOffset + SESparseExtent.slot(e) * 8) * 512 + offset % 4096, into: buffer)
            return .data
        default: return .zero
        }
    }

    public func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet) {
        var b = AllocationBuilder(grainBytes: 4096, byteCount: byteCount)
        var data: [Extent] = []
        tables.forEachPresent(below: (byteCount + 4095) / 4096) { g, e in
            switch e >> 60 {
            case 1, 2: b.add(g, zero: true)
            case 3: b.append(&data, g * 4096, min(4096, byteCount - g * 4096))
            default: break
            }
        }
        return b.result(data: data)
    }
}
