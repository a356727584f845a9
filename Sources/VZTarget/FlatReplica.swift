import Glibc
import VZCore
import VZFormats
import VZPlatform

/// The replica as ESXi stores a thin disk: `DISK.vmdk` (text descriptor, createType "vmfs") and
/// `DISK-flat.vmdk` (the raw bytes, sparse: zero extents stay holes). Both live in the job's
/// directory under the datastore root and are opened only through it.
public final class FlatReplica: Replica {
    public let directory: Directory
    public let disk: String
    public let capacity: UInt64
    let flat: PosixFile

    public var displayName: String { flat.path }
    public var descriptorName: String { FlatReplica.descriptorName(disk) }
    public static func descriptorName(_ disk: String) -> String { "\(disk).vmdk" }
    public static func flatName(_ disk: String) -> String { "\(disk)-flat.vmdk" }

    private init(directory: Directory, disk: String, flat: PosixFile, capacity: UInt64) {
        self.directory = directory
        self.disk = disk
        self.flat = flat
        self.capacity = capacity
    }

    /// Opens the existing replica of `disk`, or nil when it has none. A replica whose size is not
    /// `expectedCapacity` is refused: the source disk changed size, which needs a new seed.
    public static func open(in directory: Directory, disk: String, expectedCapacity: UInt64?) throws -> FlatReplica? {
        guard let f = try directory.openIfExists(flatName(disk), flags: O_RDWR) else { return nil }
        let size = try f.size()
        if let want = expectedCapacity, size != want {
            throw VZError(.targetRefused, "\(f.path): the replica holds \(size) bytes but the source disk has \(want); the disk was resized: remove the replica's files to seed it again")
        }
        return FlatReplica(directory: directory, disk: disk, flat: f, capacity: size)
    }

    /// Creates an empty (all-hole) replica and its descriptor, durably.
    public static func create(in directory: Directory, disk: String, capacity: UInt64) throws -> FlatReplica {
        let f = try directory.open(flatName(disk), flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o640)
        try f.truncate(to: capacity)
        try f.sync()
        let replica = FlatReplica(directory: directory, disk: disk, flat: f, capacity: capacity)
        try replica.writeDescriptor(cid: FlatDescriptor.randomCID())
        return replica
    }

    /// Rewrites the descriptor atomically (a new CID marks new content, VMDK-FORMATS.md §7).
    public func writeDescriptor(cid: UInt32) throws {
        let d = FlatDescriptor(cid: cid, capacity: capacity, flatFileName: FlatReplica.flatName(disk))
        try directory.writeAtomically(descriptorName, Array(d.text().utf8))
    }

    public func readDescriptor() throws -> FlatDescriptor? {
        guard let bytes = try directory.readFile(descriptorName, maxSize: 64 * 1024) else { return nil }
        return try FlatDescriptor.parse(bytes, fileName: "\(directory.path)/\(descriptorName)")
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

    public func holes() throws -> ExtentSet { try flat.holes(below: capacity) }

    public func flush() throws { try flat.sync() }
}
