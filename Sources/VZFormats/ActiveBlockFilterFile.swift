import VZCore

/// The active-block filter `DISK.vmdk-abbt.vztemp` the source writes in the job's workDir at
/// the start of a disk's ABM pass (Docs/formats.md): the disk's active byte extents, which the
/// planner intersects its candidate set with. Little-endian, field by field:
///
///     header (48 bytes)  magic "VZABBT\0\0", version u32 = 1, granularity u32, capacity u64,
///                        extentCount u64, activeBytes u64, flags u32 = 0,
///                        headerCRC32C u32 (bytes 0..<44)
///     extents            extentCount x (offset u64, length u64): sorted, disjoint, not
///                        touching, none empty, none past capacity
///     trailer (8 bytes)  extentsCRC32C u32 (of the extent bytes), magic "VZAE"
public enum ActiveBlockFilterFile {
    public static let magic: [UInt8] = Array("VZABBT".utf8) + [0, 0]
    public static let trailerMagic: [UInt8] = Array("VZAE".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 48
    public static let trailerSize = 8
    public static let extentSize = 16

    /// The file name for a disk.
    public static func fileName(disk: String) -> String { "\(disk).vmdk-abbt.vztemp" }

    public struct Filter: Equatable, Sendable {
        /// The granule the mapper dropped smaller free ranges at (the job's block size).
        public var granularity: UInt32
        public var capacity: UInt64
        public var active: ExtentSet
        public init(granularity: UInt32, capacity: UInt64, active: ExtentSet) {
            self.granularity = granularity; self.capacity = capacity; self.active = active
        }
    }

    /// The largest file a disk of `capacity` bytes can have: an active extent and a gap per two
    /// bytes, which is more than any real filter, and a bound on what a reader accepts.
    public static func maxFileSize(capacity: UInt64) -> UInt64 {
        UInt64(headerSize + trailerSize) + (capacity / 2 + 1) * UInt64(extentSize)
    }

    public static func encode(_ f: Filter) -> [UInt8] {
        var w = ByteWriter(capacity: headerSize + trailerSize + f.active.extents.count * extentSize)
        w.raw(magic)
        w.u32(version); w.u32(f.granularity); w.u64(f.capacity)
        w.u64(UInt64(f.active.extents.count)); w.u64(f.active.totalLength); w.u32(0)
        w.u32(CRC32C.checksum(w.bytes[0..<44]))
        for e in f.active { w.u64(e.offset); w.u64(e.length) }
        w.u32(CRC32C.checksum(w.bytes[headerSize...]))
        w.raw(trailerMagic)
        return w.bytes
    }

    /// Decodes and checks a filter; every failure is `.sourceIO` and names the file and field.
    public static func decode(_ bytes: [UInt8], fileName: String) throws -> Filter {
        var r = ByteReader(bytes, context: fileName, errorKind: .sourceIO)
        try r.recordHeader(magic: magic, record: "an active-block filter", versions: [version])
        let granularity = try r.u32("granularity")
        let capacity = try r.u64("capacity")
        let count = try r.u64("extentCount")
        let activeBytes = try r.u64("activeBytes")
        let flags = try r.u32("flags")
        guard flags == 0 else { throw r.fail("flags", "unknown flags 0x\(String(flags, radix: 16))") }
        let crc = try r.u32("headerCRC32C")
        guard crc == CRC32C.checksum(bytes[0..<44]) else { throw r.fail("headerCRC32C", "header checksum mismatch") }
        guard count <= UInt64(bytes.count - headerSize) / UInt64(extentSize),
              bytes.count == headerSize + Int(count) * extentSize + trailerSize else {
            throw r.fail("extentCount", "\(count) extents do not match a file of \(bytes.count) bytes")
        }
        var extents: [Extent] = []
        extents.reserveCapacity(Int(count))
        var previousEnd: UInt64?
        var total: UInt64 = 0
        for i in 0..<Int(count) {
            let offset = try r.u64("extents[\(i)].offset"), length = try r.u64("extents[\(i)].length")
            guard length > 0, offset <= capacity, length <= capacity - offset else {
                throw r.fail("extents[\(i)]", "[\(offset), +\(length)) is empty or past the capacity \(capacity)")
            }
            if let p = previousEnd, offset <= p { throw r.fail("extents[\(i)]", "not sorted, disjoint and apart from the previous extent") }
            previousEnd = offset + length
            total += length
            extents.append(Extent(offset: offset, length: length))
        }
        let extentsCRC = try r.u32("extentsCRC32C")
        guard extentsCRC == CRC32C.checksum(bytes[headerSize..<(headerSize + Int(count) * extentSize)]) else {
            throw r.fail("extentsCRC32C", "extent checksum mismatch")
        }
        guard Array(try r.raw(4, "trailer magic")) == trailerMagic else { throw r.fail("trailer magic", "expected \"VZAE\"") }
        guard total == activeBytes else { throw r.fail("activeBytes", "\(activeBytes), but the extents add up to \(total)") }
        return Filter(granularity: granularity, capacity: capacity, active: ExtentSet(extents))
    }
}
