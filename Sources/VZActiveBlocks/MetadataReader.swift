import VZCore

/// Reads metadata through the disk's `BlockReader`, counting every byte, and refuses any read
/// outside the disk or larger than `maxRead`: no field of a structure can make ABM allocate more
/// than that at once.
final class MetadataReader {
    let disk: BlockReader
    private(set) var bytesRead: UInt64 = 0
    static let maxRead = 16 << 20

    init(disk: BlockReader) { self.disk = disk }

    /// Counts bytes a nested reader (an LV view) read through this disk.
    func account(_ n: UInt64) { bytesRead += n }

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard count >= 0, count <= MetadataReader.maxRead else {
            throw ParseFailure("a read of \(count) bytes at \(offset) is larger than ABM ever reads at once")
        }
        guard offset <= disk.capacity, UInt64(count) <= disk.capacity - offset else {
            throw ParseFailure("a read of \(count) bytes at \(offset) is past the end of the disk (\(disk.capacity) bytes)")
        }
        var out = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return out }
        do {
            try out.withUnsafeMutableBytes { try disk.read(at: offset, into: $0) }
        } catch {
            throw ParseFailure("cannot read \(count) bytes at \(offset): \(error)")
        }
        bytesRead += UInt64(count)
        return out
    }
}

/// One volume's bytes: `[base, base + length)` of the disk. Offsets given to it are relative to
/// the volume and may not leave it.
struct VolumeWindow {
    let reader: MetadataReader
    let base: UInt64
    let length: UInt64

    func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        guard offset <= length, UInt64(count) <= length - offset else {
            throw ParseFailure("a read of \(count) bytes at \(offset) is past the end of the volume (\(length) bytes)")
        }
        return try reader.read(at: base + offset, count: count)
    }
}

/// Collects the byte ranges a filesystem proves free, relative to its volume, in any order.
/// Each range is clipped to the volume and shrunk inward to whole granules of the disk (a
/// granule is the replication block, or smaller): a free range smaller than a granule could
/// never spare a block, and dropping it bounds the set to one extent per two granules.
struct FreeCollector {
    let base: UInt64
    let length: UInt64
    private(set) var granularity: UInt64
    /// When the set grows past `maxExtents`, it is coarsened to this granule (dropping what no
    /// longer covers a whole one): memory stays bounded on the most fragmented filesystem.
    let coarseGranularity: UInt64
    let maxExtents: Int
    private(set) var free = ExtentSet()
    private var pending: Extent?

    init(base: UInt64, length: UInt64, granularity: UInt64, coarseGranularity: UInt64? = nil, maxExtents: Int = 1 << 22) {
        self.base = base; self.length = length; self.granularity = Swift.max(granularity, 1)
        self.coarseGranularity = Swift.max(coarseGranularity ?? granularity, self.granularity)
        self.maxExtents = maxExtents
    }

    /// Marks `[offset, offset + count)` of the volume as proven free. Ranges that touch the
    /// previous one are merged before they are rounded, so runs of small clusters still count.
    mutating func addFree(_ offset: UInt64, _ count: UInt64) {
        guard offset < length, count > 0 else { return }
        let n = Swift.min(count, length - offset)
        if let p = pending, p.end == offset {
            pending = Extent(offset: p.offset, length: p.length + n)
        } else {
            flush()
            pending = Extent(offset: offset, length: n)
        }
    }

    mutating func flush() {
        guard let p = pending else { return }
        pending = nil
        let lo = base + p.offset, hi = base + p.end
        let first = (lo + granularity - 1) / granularity * granularity
        let last = hi / granularity * granularity
        if first < last { free.insert(Extent(offset: first, length: last - first)) }
        if free.extents.count > maxExtents && granularity < coarseGranularity {
            granularity = coarseGranularity
            free = free.shrunk(to: granularity)
        }
    }

    /// The disk-absolute free extents.
    mutating func result() -> ExtentSet { flush(); return free }
}

extension ExtentSet {
    /// The whole, aligned granules of `g` bytes the set covers.
    func shrunk(to g: UInt64) -> ExtentSet {
        var out = ExtentSet()
        for e in self {
            let lo = (e.offset + g - 1) / g * g, hi = e.end / g * g
            if lo < hi { out.insert(Extent(offset: lo, length: hi - lo)) }
        }
        return out
    }
}
