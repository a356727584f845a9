import Glibc
import VZCore
import VZFormats
import VZPlatform

/// The replica as ESXi stores a thin disk: `DISK.vmdk` (text descriptor, createType "vmfs") and
/// `DISK-flat.vmdk` (the raw bytes, sparse: zero extents stay holes). Both live in the job's
/// directory under the datastore root and are opened only through it (FlatReplicaStore).
public final class FlatReplica: Replica {
    public let directory: Directory
    public let files: DiskFiles
    public let capacity: UInt64
    let flat: PosixFile

    public var displayName: String { flat.path }

    init(directory: Directory, files: DiskFiles, flat: PosixFile, capacity: UInt64) {
        self.directory = directory
        self.files = files
        self.flat = flat
        self.capacity = capacity
    }

    /// Rewrites the descriptor atomically (a new CID marks new content, VMDK-FORMATS.md §7).
    public func writeDescriptor(cid: UInt32) throws {
        try FlatReplica.writeDescriptor(cid: cid, capacity: capacity, files: files, in: directory)
    }

    static func writeDescriptor(cid: UInt32, capacity: UInt64, files: DiskFiles, in directory: Directory) throws {
        let d = FlatDescriptor(cid: cid, capacity: capacity, flatFileName: files.flat)
        try directory.writeAtomically(files.descriptor, Array(d.text().utf8))
    }

    public func readDescriptor() throws -> FlatDescriptor? {
        guard let bytes = try directory.readFile(files.descriptor, maxSize: 64 * 1024) else { return nil }
        return try FlatDescriptor.parse(bytes, fileName: "\(directory.path)/\(files.descriptor)")
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try flat.read(at: offset, into: buffer)
    }

    public func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
        try flat.write(at: offset, bytes)
    }

    public func writeZeros(_ extent: Extent) throws {
        try flat.punchHole(extent)
    }

    public func isHole(_ extent: Extent) throws -> Bool {
        guard let data = try flat.nextData(from: extent.offset) else { return true }
        return data >= extent.end
    }

    /// The holes of the data file: read as zeros without reading them.
    public func knownZeroExtents() throws -> ExtentSet { try flat.holes(below: capacity) }

    /// True when the data file holds no data at all (every byte a hole).
    public func holdsNoData() throws -> Bool { try flat.nextData(from: 0).map { $0 >= capacity } ?? true }

    public func flush() throws { try flat.sync() }

    public func startWriteback(_ extent: Extent) throws { try flat.startWriteback(extent) }
}
