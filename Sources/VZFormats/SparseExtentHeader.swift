import VZCore

/// The 512-byte header of a hosted sparse extent (magic `KDMV`; monolithicSparse,
/// twoGbMaxExtentSparse, streamOptimized), VMDK-FORMATS.md §2.1. Parsed from bytes and checked
/// against the size of its file, so no later allocation is sized by an unchecked field.
public struct SparseExtentHeader: Equatable, Sendable {
    public static let size = 512
    public static let magic: [UInt8] = Array("KDMV".utf8)
    /// gdOffset of a streamOptimized file whose grain directory is at the end (see the footer).
    public static let gdAtEnd: UInt64 = 0xFFFF_FFFF_FFFF_FFFF

    public static let flagNewlineCheck: UInt32 = 0x1
    public static let flagRedundantGD: UInt32 = 0x2
    public static let flagZeroedGrainGTE: UInt32 = 0x4
    public static let flagCompressed: UInt32 = 0x10000
    public static let flagMarkers: UInt32 = 0x20000
    /// Bits 16-31 are incompatible: a reader that does not know one must refuse the file.
    static let knownIncompatible: UInt32 = flagCompressed | flagMarkers

    /// The largest grain read: 8 MiB (VMware writes 64 KiB; qemu allows up to 1 GiB, which
    /// would make one grain's inflate buffer absurd).
    public static let maxGrainSectors: UInt64 = 16384
    public static let maxGTEsPerGT: UInt32 = 512
    /// An embedded descriptor larger than 1 MiB is not one.
    public static let maxDescriptorSectors: UInt64 = 2048

    public var version: UInt32
    public var flags: UInt32
    public var capacitySectors: UInt64
    public var grainSectors: UInt64
    public var descriptorOffset: UInt64
    public var descriptorSectors: UInt64
    public var numGTEsPerGT: UInt32
    public var rgdOffset: UInt64
    public var gdOffset: UInt64
    public var overheadSectors: UInt64
    public var uncleanShutdown: Bool
    public var compressAlgorithm: UInt16

    public var isCompressed: Bool { flags & SparseExtentHeader.flagCompressed != 0 }
    public var hasMarkers: Bool { flags & SparseExtentHeader.flagMarkers != 0 }
    public var usesZeroedGrains: Bool { flags & SparseExtentHeader.flagZeroedGrainGTE != 0 }
    public var grainBytes: UInt64 { grainSectors * 512 }
    /// Sectors one grain table covers.
    public var gtCoverage: UInt64 { UInt64(numGTEsPerGT) * grainSectors }
    public var numGDEs: UInt64 { (capacitySectors + gtCoverage - 1) / gtCoverage }
    public var gtSectors: UInt64 { (UInt64(numGTEsPerGT) * 4 + 511) / 512 }

    public static func hasMagic(_ bytes: some Collection<UInt8>) -> Bool { Array(bytes.prefix(4)) == magic }

    /// Parses and checks a header (or a streamOptimized footer, `isFooter`) of a file of
    /// `fileSize` bytes. Every error is `.sourceIO`, names the file and the field.
    public static func parse(_ bytes: some Collection<UInt8>, fileName: String, fileSize: UInt64,
                             isFooter: Bool = false) throws -> SparseExtentHeader {
        let what = isFooter ? "sparse footer" : "sparse header"
        func fail(_ field: String, _ why: String) -> VZError {
            VZError(.sourceIO, "\(fileName): \(what) field '\(field)': \(why)")
        }
        let b = Array(bytes)
        guard b.count >= size else { throw VZError(.sourceIO, "\(fileName): \(what) is \(b.count) bytes, shorter than \(size)") }
        guard Array(b[0..<4]) == magic else { throw fail("magicNumber", "not KDMV: not a hosted sparse VMDK extent") }
        var r = ByteReader(b[4..<size], context: "\(fileName) \(what)", errorKind: .sourceIO)
        let version = try r.u32("version")
        let flags = try r.u32("flags")
        let capacity = try r.u64("capacity")
        let grain = try r.u64("grainSize")
        let descOffset = try r.u64("descriptorOffset")
        let descSize = try r.u64("descriptorSize")
        let gtes = try r.u32("numGTEsPerGT")
        let rgd = try r.u64("rgdOffset")
        let gd = try r.u64("gdOffset")
        let overhead = try r.u64("overHead")
        let unclean = try r.u8("uncleanShutdown")
        let newlines = try r.raw(4, "newline check")
        let compress = try r.u16("compressAlgorithm")

        guard (1...3).contains(version) else { throw fail("version", "\(version) is not 1, 2 or 3") }
        let unknown = flags & 0xFFFF_0000 & ~knownIncompatible
        guard unknown == 0 else {
            throw fail("flags", "unknown incompatible flag bits 0x\(String(unknown, radix: 16)) (of 0x\(String(flags, radix: 16))): this reader cannot read the file")
        }
        if flags & flagNewlineCheck != 0 && Array(newlines) != [0x0A, 0x20, 0x0D, 0x0A] {
            throw fail("newline check", "bytes 73-76 are not 0A 20 0D 0A: the file was mangled by a text-mode transfer")
        }
        guard capacity > 0, capacity <= VMDKDescriptor.maxSectors else {
            throw fail("capacity", "\(capacity) sectors is not between 1 and 2^41 (1 PiB)")
        }
        guard grain > 0, grain <= maxGrainSectors, grain & (grain - 1) == 0 else {
            throw fail("grainSize", "\(grain) sectors is not a power of two up to \(maxGrainSectors)")
        }
        guard gtes > 0, gtes <= maxGTEsPerGT else { throw fail("numGTEsPerGT", "\(gtes) is not between 1 and \(maxGTEsPerGT)") }
        let compressed = flags & flagCompressed != 0
        if compressed {
            guard compress == 1 else { throw fail("compressAlgorithm", "\(compress) is not 1 (deflate)") }
        } else {
            guard compress == 0 else { throw fail("compressAlgorithm", "\(compress) on a file without the compressed flag") }
        }
        if gd == gdAtEnd {
            guard !isFooter else { throw fail("gdOffset", "the footer's grain directory is 'at end' too") }
            guard compressed else { throw fail("gdOffset", "'at end' (GD_AT_END) on a file that is not streamOptimized") }
        } else {
            guard gd > 0, gd <= fileSize / 512 else { throw fail("gdOffset", "sector \(gd) is outside the file (\(fileSize) bytes)") }
        }
        if descSize > 0 || descOffset > 0 {
            guard descSize <= maxDescriptorSectors else { throw fail("descriptorSize", "\(descSize) sectors is larger than 1 MiB") }
            guard descOffset > 0, descOffset <= fileSize / 512, descSize <= fileSize / 512 - descOffset else {
                throw fail("descriptorOffset", "\(descSize) sectors at sector \(descOffset) lie outside the file (\(fileSize) bytes)")
            }
        }
        return SparseExtentHeader(version: version, flags: flags, capacitySectors: capacity, grainSectors: grain,
                                  descriptorOffset: descOffset, descriptorSectors: descSize, numGTEsPerGT: gtes,
                                  rgdOffset: rgd, gdOffset: gd, overheadSectors: overhead, uncleanShutdown: unclean != 0,
                                  compressAlgorithm: compress)
    }

    /// The header as a writer lays it out (tests and fuzz corpus build files with it).
    public func bytes() -> [UInt8] {
        var w = ByteWriter(capacity: 512)
        w.raw(SparseExtentHeader.magic)
        w.u32(version); w.u32(flags); w.u64(capacitySectors); w.u64(grainSectors)
        w.u64(descriptorOffset); w.u64(descriptorSectors); w.u32(numGTEsPerGT)
        w.u64(rgdOffset); w.u64(gdOffset); w.u64(overheadSectors); w.u8(uncleanShutdown ? 1 : 0)
        w.raw([0x0A, 0x20, 0x0D, 0x0A]); w.u16(compressAlgorithm)
        w.raw([UInt8](repeating: 0, count: 512 - w.bytes.count))
        return w.bytes
    }
}

/// A streamOptimized marker (VMDK-FORMATS.md §2.6): 12 bytes, then for metadata markers a type.
public struct StreamMarker: Equatable, Sendable {
    public enum Kind: UInt32, Sendable { case endOfStream = 0, grainTable = 1, grainDirectory = 2, footer = 3 }
    public var value: UInt64
    public var size: UInt32
    /// nil for a grain marker (size > 0).
    public var kind: Kind?

    public static func parse(_ bytes: some Collection<UInt8>, fileName: String, at offset: UInt64) throws -> StreamMarker {
        var r = ByteReader(Array(bytes.prefix(16)), context: "\(fileName) marker at offset \(offset)", errorKind: .sourceIO)
        let value = try r.u64("lba")
        let size = try r.u32("size")
        if size > 0 { return StreamMarker(value: value, size: size, kind: nil) }
        let type = try r.u32("type")
        guard let k = Kind(rawValue: type) else {
            throw VZError(.sourceIO, "\(fileName): marker at offset \(offset) field 'type': \(type) is not a known marker")
        }
        return StreamMarker(value: value, size: 0, kind: k)
    }
}
