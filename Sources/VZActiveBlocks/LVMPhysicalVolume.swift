import VZCore

/// An LVM2 physical volume: its label, the current metadata copy (raw_locn 0 of the first
/// metadata area, CRC-checked), and the linear LVs that lie wholly on it, each probed like a
/// partition through a view that maps LV bytes to PV bytes. Free PEs are free; the label and
/// metadata area, the tail after the last PE, and every PE of an LV that is not a single-stripe
/// linear LV on this PV (thin, mirror, raid, snapshot, multi-PV) stay active.
enum LVMPhysicalVolume {
    static let mdaMagic = Array(" LVM2 x[5A%r0N*>".utf8)
    static let maxMetadata = 4 << 20

    /// LVM's CRC: reflected 0xEDB88320 seeded with 0xf597a6cf, no final inversion.
    static func crc(_ bytes: ArraySlice<UInt8>) -> UInt32 { Checksums.crc32Raw(0xF597_A6CF, bytes) }

    struct Segment { var start: UInt64, count: UInt64, firstPE: UInt64 }

    static func map(_ window: VolumeWindow, granularity: UInt64, coarse: UInt64, maxExtents: Int, journalOverlay: Bool,
                    _ collector: inout FreeCollector, _ children: inout [Volume]) -> ProbeOutcome {
        do {
            let head = try window.read(at: 0, count: Int(Swift.min(4 * 512, window.length)))
            guard let labelSector = (0..<4).first(where: { Fields(head, "LVM label").matches($0 * 512, "LABELONE") }) else {
                throw ParseFailure("no LVM label")
            }
            let label = Array(head[(labelSector * 512)..<(labelSector * 512 + 512)])
            let lf = Fields(label, "LVM label")
            guard try lf.u64(8) == UInt64(labelSector) else { throw ParseFailure("the label's sector number is wrong") }
            guard try lf.u32(16) == crc(label[20..<512]) else { throw ParseFailure("label CRC mismatch") }
            guard lf.matches(24, "LVM2 001") else { throw ParseFailure("label type is not LVM2 001") }
            let pvh = Int(try lf.u32(20))
            let pf = Fields(label, at: pvh, "PV header")
            let uuid = String(decoding: try pf.raw(0, 32), as: UTF8.self)
            var at = 40
            var areas: [[(UInt64, UInt64)]] = [[], []]
            for list in 0..<2 {
                while true {
                    let off = try pf.u64(at), size = try pf.u64(at + 8)
                    at += 16
                    if off == 0 && size == 0 { break }
                    areas[list].append((off, size))
                    guard areas[list].count <= 8 else { throw ParseFailure("too many PV areas") }
                }
            }
            guard let (mdaOffset, mdaSize) = areas[1].first else { throw ParseFailure("the PV has no metadata area") }
            guard mdaSize >= 1024, mdaOffset <= window.length, mdaSize <= window.length - mdaOffset else {
                throw ParseFailure("metadata area [\(mdaOffset), +\(mdaSize)) outside the PV")
            }
            let mh = try window.read(at: mdaOffset, count: 512)
            let mf = Fields(mh, "mda header")
            guard try mf.u32(0) == crc(mh[4..<512]) else { throw ParseFailure("mda header CRC mismatch") }
            guard Array(try mf.raw(4, 16)) == mdaMagic, try mf.u32(20) == 1 else { throw ParseFailure("mda header magic or version") }
            let textOffset = try mf.u64(40), textSize = try mf.u64(48), textCRC = try mf.u32(56)
            guard textSize > 0, textSize <= UInt64(maxMetadata), textSize < mdaSize - 512, textOffset >= 512, textOffset < mdaSize else {
                throw ParseFailure("metadata text [\(textOffset), +\(textSize)) does not fit its area")
            }
            // The circular buffer wraps to just after the mda header.
            let first = Swift.min(textSize, mdaSize - textOffset)
            var text = try window.read(at: mdaOffset + textOffset, count: Int(first))
            if first < textSize { text += try window.read(at: mdaOffset + 512, count: Int(textSize - first)) }
            guard crc(text[...]) == textCRC else { throw ParseFailure("metadata text CRC mismatch") }
            let tree = try LVMTextParser.parse(text)
            guard let (vgName, vg) = tree.sections.first else { throw ParseFailure("no volume group in the metadata") }
            guard let extentSectors = vg["extent_size"]?.int, extentSectors > 0, extentSectors <= 1 << 30 else { throw ParseFailure("extent_size") }
            let E = UInt64(extentSectors) * 512
            let pvs = vg["physical_volumes"]?.sections ?? []
            guard let (pvName, pv) = pvs.first(where: { ($0.1["id"]?.string ?? "").filter { $0 != "-" } == uuid }) else {
                throw ParseFailure("this PV (\(uuid)) is not in the metadata of VG \(vgName)")
            }
            guard let peStartS = pv["pe_start"]?.int, peStartS >= 0, let peCount = pv["pe_count"]?.int, peCount >= 0 else {
                throw ParseFailure("pe_start / pe_count of \(pvName)")
            }
            let P = UInt64(peStartS) * 512
            guard P <= window.length, UInt64(peCount) <= (window.length - P) / E else {
                throw ParseFailure("\(peCount) extents of \(E) bytes from \(P) do not fit the PV (\(window.length) bytes)")
            }
            var referenced = ExtentSet()  // PE indexes any segment uses on this PV
            var warnings: [String] = []
            for (lvName, lv) in vg["logical_volumes"]?.sections ?? [] {
                var segments: [Segment] = []
                var linear = true
                for (_, seg) in lv.sections {
                    guard let start = seg["start_extent"]?.int, let count = seg["extent_count"]?.int, start >= 0, count > 0 else {
                        linear = false; continue
                    }
                    let stripes = seg["stripes"]?.list ?? []
                    var onThisPV = false
                    for k in stride(from: 0, to: stripes.count - 1, by: 2) {
                        if stripes[k].string == pvName, let pe = stripes[k + 1].int, pe >= 0 {
                            onThisPV = true
                            referenced.insert(Extent(offset: UInt64(pe), length: UInt64(count)))
                            segments.append(Segment(start: UInt64(start), count: UInt64(count), firstPE: UInt64(pe)))
                        }
                    }
                    if seg["type"]?.string != "striped" || seg["stripe_count"]?.int != 1 || stripes.count != 2 || !onThisPV {
                        linear = false
                    }
                }
                let name = "\(vgName)/\(lvName)"
                segments.sort { $0.start < $1.start }
                var next: UInt64 = 0
                for s in segments where linear {
                    if s.start != next || s.firstPE + s.count > UInt64(peCount) { linear = false }
                    next = s.start + s.count
                }
                let lvBytes = next * E
                guard linear, !segments.isEmpty else {
                    warnings.append("LV \(name) is not a linear LV wholly on this disk: its extents stay active")
                    children.append(Volume(name: name, kind: .logicalVolume, scheme: "lvm2", partitionType: nil, filesystem: "unknown",
                                           offset: window.base + P + (segments.first?.firstPE ?? 0) * E, size: lvBytes, activeBytes: lvBytes,
                                           allActive: true, reason: "unsupported: not a linear LV on this PV"))
                    continue
                }
                // The LV as a disk of its own, probed like a partition; its free bytes map back.
                let view = LogicalVolumeView(window: window, segments: segments, peStart: P, extentBytes: E, length: lvBytes)
                let inner = MetadataReader(disk: view)
                let (outcome, free, _, _) = VolumeProber.probe(VolumeWindow(reader: inner, base: 0, length: lvBytes),
                                                               granularity: granularity, coarseGranularity: coarse, maxExtents: maxExtents,
                                                               insideLV: true, journalOverlay: journalOverlay)
                window.reader.account(inner.bytesRead)
                var freed: UInt64 = 0
                for e in free {
                    for piece in view.diskExtents(e) {
                        collector.addFree(piece.offset, piece.length); freed += piece.length
                    }
                }
                collector.flush()
                let (fs, allActive, reason): (String, Bool, String?)
                switch outcome {
                case let .mapped(f, notes): (fs, allActive, reason) = (f, false, nil); warnings += notes.map { "LV \(name): \($0)" }
                case let .allActive(f, r): (fs, allActive, reason) = (f, true, r)
                }
                children.append(Volume(name: name, kind: .logicalVolume, scheme: "lvm2", partitionType: nil, filesystem: fs,
                                       offset: window.base + P + segments[0].firstPE * E, size: lvBytes, activeBytes: lvBytes - freed,
                                       allActive: allActive, reason: reason))
            }
            // VG free space: PEs on this PV that no segment uses.
            for pe in ExtentSet([Extent(offset: 0, length: UInt64(peCount))]).subtracting(referenced) {
                collector.addFree(P + pe.offset * E, pe.length * E)
            }
            return .mapped("lvm2", warnings)
        } catch {
            return .allActive("lvm2", "corrupt: \(error)")
        }
    }
}

/// An LV's bytes as a disk: LV byte x of segment s is PV byte `peStart + s.firstPE * E + (x - s.start * E)`.
final class LogicalVolumeView: BlockReader {
    let window: VolumeWindow
    let segments: [LVMPhysicalVolume.Segment]
    let peStart: UInt64, extentBytes: UInt64
    let capacity: UInt64
    var displayName: String { "LV view" }

    init(window: VolumeWindow, segments: [LVMPhysicalVolume.Segment], peStart: UInt64, extentBytes: UInt64, length: UInt64) {
        self.window = window; self.segments = segments; self.peStart = peStart; self.extentBytes = extentBytes; capacity = length
    }

    /// The PV-relative pieces of an LV extent.
    func pvExtents(_ e: Extent) -> [Extent] {
        var out: [Extent] = []
        for s in segments {
            let lo = s.start * extentBytes, hi = (s.start + s.count) * extentBytes
            guard let x = e.intersection(Extent(offset: lo, length: hi - lo)) else { continue }
            out.append(Extent(offset: peStart + s.firstPE * extentBytes + (x.offset - lo), length: x.length))
        }
        return out
    }
    func diskExtents(_ e: Extent) -> [Extent] { pvExtents(e) }

    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        for piece in pvExtents(Extent(offset: offset, length: UInt64(buffer.count))) {
            let bytes = try window.reader.disk.readBytes(at: window.base + piece.offset, count: Int(piece.length))
            UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + bytes.count)]).copyBytes(from: bytes)
            done += bytes.count
        }
        guard done == buffer.count else { throw ParseFailure("LV read outside its segments") }
    }
}

extension BlockReader {
    func readBytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        return out
    }
}
