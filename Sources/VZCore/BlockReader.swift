/// Where the source reads a disk from: a raw image, a block device, later a VMDK chain or a
/// HotAdd-attached snapshot disk. Implementations must allow concurrent `read` calls.
public protocol BlockReader: AnyObject {
    /// Size of the virtual disk in bytes.
    var capacity: UInt64 { get }
    /// A human name for messages (the path, or the descriptor and chain).
    var displayName: String { get }
    /// Fills `buffer` with the disk's bytes at `offset`, every byte of it (callers pass
    /// uninitialized memory: zeros must be written, not assumed); bytes past `capacity` are not
    /// requested.
    func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Extents that are known to hold only zeros without reading them (holes of a sparse file,
    /// unallocated grains). An empty answer is always correct.
    func knownZeroExtents() throws -> ExtentSet
}

extension BlockReader {
    public func knownZeroExtents() throws -> ExtentSet { ExtentSet() }
}

/// Where the target writes a disk to: a flat VMDK today, a HotAdd-attached block device later.
/// A replica is also a `BlockReader` of itself: hashing it (an untrusted map, `verify`) reads it
/// like any disk, and its holes come through `knownZeroExtents()`.
public protocol Replica: BlockReader {
    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws
    /// Makes the extent read as zeros, releasing storage where the medium can (a hole).
    func writeZeros(_ extent: Extent) throws
    /// True when the extent is known to be a hole (so an undo record needs no data).
    func isHole(_ extent: Extent) throws -> Bool
    /// Makes every completed write durable; a failure here fails the pass.
    func flush() throws
    /// Starts writing the extent's completed writes to the medium without waiting, so that
    /// `flush` at the commit has little left to do. A hint, not a durable step.
    func startWriteback(_ extent: Extent) throws
}

extension Replica {
    /// A medium with no writeback to start (memory, a test double) has nothing to do.
    public func startWriteback(_ extent: Extent) throws {}
}
