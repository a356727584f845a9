import VZCore

/// The I/O the VMDK readers need, implemented above this layer (VZSource over PosixFile,
/// confined to the disk's folder; tests over bytes in memory). `name` is always one file name
/// inside the disk's folder, already checked by `VMDKNames`. Must allow concurrent calls.
public protocol VMDKFileAccess: AnyObject {
    /// Size in bytes of the file (a block device's size for a device).
    func size(of name: String) throws -> UInt64
    /// Reads exactly `buffer.count` bytes at `offset`; a short read is an error naming the file.
    func read(_ name: String, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Inflates a zlib stream into `output`, at most `output.count` bytes, and returns how many
    /// were produced; more, or malformed input, is an error naming `context`.
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, context: String) throws -> Int
    /// Holes of the file below `limit` (SEEK_HOLE on a thin -flat.vmdk), known to read as zeros.
    /// An empty answer is always correct.
    func holes(of name: String, below limit: UInt64) throws -> ExtentSet
}

extension VMDKFileAccess {
    public func holes(of name: String, below limit: UInt64) throws -> ExtentSet { ExtentSet() }

    public func read(_ name: String, at offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(name, at: offset, into: $0) }
        return bytes
    }
}

/// What a link holds for a range inside one of its grains.
public enum GrainRead: Equatable, Sendable {
    /// The buffer was filled from this link.
    case data
    /// The range reads as zeros in this link (ZERO extent, zeroed grain, unmapped): the parent is not consulted.
    case zero
    /// Not allocated in this link: read the parent (or zeros at the base). The buffer is untouched.
    case unallocated
}

/// One extent of a link, in offsets relative to the extent's first byte.
public protocol VMDKExtentReader: AnyObject {
    var byteCount: UInt64 { get }
    /// Bytes from `offset` to the end of the unit that is allocated or not as a whole (a grain;
    /// the whole extent for flat and zero extents).
    func grainRemainder(at offset: UInt64) -> UInt64
    /// Reads a range that lies inside one grain (`buffer.count <= grainRemainder(at: offset)`).
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead
    /// The ranges that read as zeros without a parent, and the ones not allocated here.
    func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet)
}

/// `FLAT` and `VMFS` extents: a region of a raw file, always allocated.
public final class FlatExtent: VMDKExtentReader {
    let access: VMDKFileAccess
    public let fileName: String
    public let start: UInt64
    public let byteCount: UInt64

    /// Checks the region against the file's size: an extent larger than its file is an error.
    public init(access: VMDKFileAccess, fileName: String, sectors: UInt64, offsetSectors: UInt64, descriptor: String) throws {
        let size = try access.size(of: fileName)
        let end = (sectors + offsetSectors) * 512  // both ≤ 2^41
        guard end <= size else {
            throw VZError(.sourceIO, "\(descriptor): extent '\(fileName)' field 'sectors': \(sectors) sectors at sector \(offsetSectors) need \(end) bytes, the file has \(size)")
        }
        self.access = access; self.fileName = fileName; self.start = offsetSectors * 512; self.byteCount = sectors * 512
    }

    public func grainRemainder(at offset: UInt64) -> UInt64 { byteCount - offset }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead {
        try access.read(fileName, at: start + offset, into: buffer)
        return .data
    }

    /// The file's holes inside the region (a thin flat file's unwritten parts) are zeros.
    public func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet) {
        let holes = try access.holes(of: fileName, below: start + byteCount)
            .intersection(ExtentSet([Extent(offset: start, length: byteCount)]))
        return (ExtentSet(holes.map { Extent(offset: $0.offset - start, length: $0.length) }), ExtentSet())
    }
}

/// A `ZERO` extent: no file, reads zeros.
public final class ZeroExtent: VMDKExtentReader {
    public let byteCount: UInt64
    public init(sectors: UInt64) { byteCount = sectors * 512 }
    public func grainRemainder(at offset: UInt64) -> UInt64 { byteCount - offset }
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws -> GrainRead { .zero }
    public func allocation() throws -> (zero: ExtentSet, unallocated: ExtentSet) {
        (ExtentSet([Extent(offset: 0, length: byteCount)]), ExtentSet())
    }
}
