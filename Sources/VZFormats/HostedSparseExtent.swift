import VZCore

/// A `SPARSE` extent: a hosted sparse file (monolithicSparse, twoGbMaxExtentSparse) or a
/// streamOptimized one (compressed grains behind markers, the grain directory up front as qemu
/// writes it or at the end behind a footer as VMware writes it). VMDK-FORMATS.md §2.
///
/// The grain directory and every grain table are read and checked once, at open: each table
/// lies inside the file and overlaps no other, each grain pointer lies inside the file. Memory
/// is 4 bytes per grain of allocated tables (64 KiB grains: 64 MiB for a 1 TiB extent), bounded
/// by the file's size, never by a header field. The redundant directory is not read.
public final class HostedSparseExtent: VMDKExtentReader {
    let access: VMDKFileAccess
    public let fileName: String
    public let header: SparseExtentHeader
    public let byteCount: UInt64
    let fileSize: UInt64
    /// Per GD entry: the index of its table in `tables`, or -1 for none.
    let tableOfGDE: [Int32]
    /// The grain tables present, each `numGTEsPerGT` entries, concatenated.
    let tables: [UInt32]

    /// `header` is the file's first sector, already parsed (nil: read it here). `sectors` is the
    /// extent line's size.
    public init(access: VMDKFileAccess, fileName: String, sectors: UInt64, header given: SparseExtentHeader? = nil,
                descriptor: String) throws {
        self.access = access
        self.fileName = fileName
        let size = try access.size(of: fileName)
        fileSize = size
        var h = try given ?? SparseExtentHeader.parse(
            try access.read(fileName, at: 0, count: Int(min(size, 512))), fileName: fileName, fileSize: size)
        if h.gdOffset == SparseExtentHeader.gdAtEnd {
            h = try HostedSparseExtent.footer(access: access, fileName: fileName, fileSize: size, header: h)
        }
        header = h
        guard h.isCompressed == h.hasMarkers else {
            throw VZError(.sourceIO, "\(fileName): sparse header field 'flags': compressed grains without markers (or markers without compression) are not read")
        }
        guard sectors <= h.capacitySectors else {
            throw VZError(.sourceIO, "\(descriptor): extent '\(fileName)' field 'sectors': \(sectors) sectors, but the sparse file holds \(h.capacitySectors)")
        }
        byteCount = sectors * 512
        // The directory: checked against the file before anything is allocated for it.
        let numGDEs = h.numGDEs
        let gdStart = h.gdOffset * 512
        guard numGDEs <= (size / 4), gdStart <= size, numGDEs * 4 <= size - gdStart else {
            throw VZError(.sourceIO, "\(fileName): sparse header field 'gdOffset': a grain directory of \(numGDEs) entries at sector \(h.gdOffset) lies outside the file (\(size) bytes)")
        }
        let gd = try access.read(fileName, at: gdStart, count: Int(numGDEs) * 4)
        let gtBytes = UInt64(h.numGTEsPerGT) * 4
        var starts: [(sector: UInt64, gde: Int)] = []
        for i in 0..<Int(numGDEs) {
            let gde = UInt64(gd.u32le(at: i * 4))
            if gde == 0 { continue }
            guard gde * 512 + gtBytes <= size else {
                throw VZError(.sourceIO, "\(fileName): grain directory entry \(i): grain table at sector \(gde) lies outside the file (\(size) bytes)")
            }
            starts.append((gde, i))
        }
        // Two directory entries sharing or overlapping a table (a loop in the metadata) are refused:
        // it would also let a small file claim more tables than it holds.
        let sorted = starts.sorted { $0.sector < $1.sector }
        for (a, b) in zip(sorted, sorted.dropFirst()) where b.sector * 512 < a.sector * 512 + gtBytes {
            throw VZError(.sourceIO, "\(fileName): grain directory entries \(a.gde) and \(b.gde): their grain tables (sectors \(a.sector) and \(b.sector)) overlap")
        }
        var index = [Int32](repeating: -1, count: Int(numGDEs))
        var tables: [UInt32] = []
        tables.reserveCapacity(starts.count * Int(h.numGTEsPerGT))
        let grainBytes = h.grainBytes
        for (n, s) in starts.enumerated() {
            let gt = try access.read(fileName, at: s.sector * 512, count: Int(gtBytes))
            for j in 0..<Int(h.numGTEsPerGT) {
                let gte = gt.u32le(at: j * 4)
                if gte == 1 && h.usesZeroedGrains { tables.append(gte); continue }
                if gte != 0 {
                    let need: UInt64 = h.isCompressed ? 12 : grainBytes
                    guard gte > 1, UInt64(gte) * 512 + need <= size else {
                        let grain = UInt64(s.gde) * UInt64(h.numGTEsPerGT) + UInt64(j)
                        throw VZError(.sourceIO, "\(fileName): grain table entry for grain \(grain) (GD \(s.gde), GT \(j)): sector \(gte) lies outside the file (\(size) bytes)")
                    }
                }
                tables.append(gte)
            }
            index[s.gde] = Int32(n)
        }
        self.tableOfGDE = index
        self.tables = tables
    }

    /// VMware's stream layout: the footer (a header with the real gdOffset) sits 1024 bytes before
    /// the end, behind a footer marker, and overrides the header.
    static func footer(access: VMDKFileAccess, fileName: String, fileSize: UInt64, header: SparseExtentHeader) throws -> SparseExtentHeader {
        guard fileSize >= 512 * 4 else {
            throw VZError(.sourceIO, "\(fileName): sparse header field 'gdOffset' is 'at end', but the file (\(fileSize) bytes) has no room for a footer")
        }
        let markerAt = fileSize - 1536
        let marker = try StreamMarker.parse(try access.read(fileName, at: markerAt, count: 16), fileName: fileName, at: markerAt)
        guard marker.kind == .footer else {
            throw VZError(.sourceIO, "\(fileName): footer marker at offset \(markerAt) is missing (gdOffset is 'at end'): the stream is truncated")
        }
        let footer = try SparseExtentHeader.parse(try access.read(fileName, at: fileSize - 1024, count: 512),
                                                  fileName: fileName, fileSize: fileSize, isFooter: true)
        guard footer.grainSectors == header.grainSectors, footer.capacitySectors == header.capacitySectors,
              footer.numGTEsPerGT == header.numGTEsPerGT else {
            throw VZError(.sourceIO, "\(fileName): sparse footer fields 'capacity'/'grainSize'/'numGTEsPerGT' differ from the header")
        }
        return footer
    }

    var grainBytes: UInt64 { header.grainBytes }

    /// The table entry of grain `g` (0 when its table is absent).
    func entry(_ g: UInt64) -> UInt32 {
        let per = UInt64(header.numGTEsPerGT)
        let gde = Int(g / per)
        guard gde < tableOfGDE.count else { return 0 }
        let t = tableOfGDE[gde]
        if t < 0 { return 0 }
        return tables[Int(t) * Int(per) + Int(g % per)]
    }

    public func grainRemainder(at offset: UInt64) -> UInt64 {
        min(grainBytes - offset % grainBytes, byteCount - offset)
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead {
        let g = offset / grainBytes
        let e = entry(g)
        if e == 0 { return .unallocated }
        if e == 1 && header.usesZeroedGrains { return .zero }
        let within = offset % grainBytes
        if !header.isCompressed {
            try access.read(fileName, at: UInt64(e) * 512 + within, into: buffer)
            return .data
        }
        var grain = [UInt8](repeating: 0, count: Int(grainBytes))
        try readCompressedGrain(g, at: UInt64(e) * 512, into: &grain)
        grain.withUnsafeBytes { src in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[Int(within)..<Int(within) + buffer.count]))
        }
        return .data
    }

    /// A grain marker (lba, size) then `size` zlib bytes that must inflate to the grain, or to
    /// what is left of the extent for a last, partial grain.
    func readCompressedGrain(_ g: UInt64, at markerOffset: UInt64, into grain: inout [UInt8]) throws {
        let context = "\(fileName): grain \(g) (marker at offset \(markerOffset))"
        let head = try access.read(fileName, at: markerOffset, count: 12)
        let lba = head.u64le(at: 0)
        let size = UInt64(head.u32le(at: 8))
        guard lba == g * header.grainSectors else {
            throw VZError(.sourceIO, "\(context): marker field 'lba' is \(lba), the grain starts at sector \(g * header.grainSectors)")
        }
        guard size > 0, size <= 2 * grainBytes + 4096 else {
            throw VZError(.sourceIO, "\(context): marker field 'size': \(size) bytes is not a compressed grain of \(grainBytes) bytes")
        }
        guard markerOffset + 12 + size <= fileSize else {
            throw VZError(.sourceIO, "\(context): marker field 'size': \(size) bytes run past the end of the file (\(fileSize) bytes)")
        }
        let payload = try access.read(fileName, at: markerOffset + 12, count: Int(size))
        let n = try payload.withUnsafeBytes { p in
            try grain.withUnsafeMutableBytes { try access.inflate(p, into: $0, context: context) }
        }
        let grainStart = g * grainBytes
        let partial = header.capacitySectors * 512 - grainStart
        guard UInt64(n) == grainBytes || UInt64(n) == partial else {
            throw VZError(.sourceIO, "\(context): inflates to \(n) bytes, not the grain's \(min(grainBytes, partial))")
        }
    }

    public func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet) {
        var zero: [Extent] = [], unallocated: [Extent] = []
        func add(_ list: inout [Extent], _ offset: UInt64, _ length: UInt64) {
            if let last = list.last, last.end == offset { list[list.count - 1].length += length } else {
                list.append(Extent(offset: offset, length: length))
            }
        }
        let grains = (byteCount + grainBytes - 1) / grainBytes
        let per = UInt64(header.numGTEsPerGT)
        var g: UInt64 = 0
        while g < grains {
            let start = g * grainBytes
            if tableOfGDE[Int(g / per)] < 0 {
                let next = min((g / per + 1) * per, grains)
                add(&unallocated, start, min(next * grainBytes, byteCount) - start)
                g = next
                continue
            }
            let e = entry(g)
            let len = min(grainBytes, byteCount - start)
            if e == 0 { add(&unallocated, start, len) } else if e == 1 && header.usesZeroedGrains { add(&zero, start, len) }
            g += 1
        }
        return (ExtentSet(zero), ExtentSet(unallocated))
    }
}

extension Array where Element == UInt8 {
    func u32le(at i: Int) -> UInt32 {
        UInt32(self[i]) | UInt32(self[i + 1]) << 8 | UInt32(self[i + 2]) << 16 | UInt32(self[i + 3]) << 24
    }
    func u64le(at i: Int) -> UInt64 { UInt64(u32le(at: i)) | UInt64(u32le(at: i + 4)) << 32 }
}
