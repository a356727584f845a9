import Glibc
import VZCore
import VZFormats
import VZPlatform

/// The replicas of one job as flat VMDKs in the job's directory under the datastore root.
public final class FlatReplicaStore: ReplicaStore {
    public let directory: Directory

    public init(directory: Directory) { self.directory = directory }

    public func open(_ files: DiskFiles, expectedCapacity: UInt64?) throws -> FlatReplica? {
        guard let f = try directory.openIfExists(files.flat, flags: O_RDWR) else { return nil }
        let size = try f.size()
        if let want = expectedCapacity, size != want {
            throw VZError(.sourceChanged, "disk '\(files.disk)': the source disk has \(want) bytes but its replica \(f.path) holds \(size): the VM's hardware changed. Reconfigure the target VM's disk to the new size (or, to seed again, remove the replica's files \(files.descriptor), \(files.flat), \(files.map)), then run the pass again")
        }
        return FlatReplica(directory: directory, files: files, flat: f, capacity: size)
    }

    /// Temp name, size, fsync, descriptor, rename into place, fsync the directory: a kill or a
    /// failure at any step leaves either no data file or a whole one (recovery removes the
    /// temp). An `ftruncate` the file system refuses (EFBIG: ext4 stops at 16 TiB) fails here,
    /// before anything exists.
    public func create(_ files: DiskFiles, capacity: UInt64) throws -> FlatReplica {
        try directory.remove(files.flatSeed)  // a crashed seed's; the caller holds the disk's lock
        let f = try directory.open(files.flatSeed, flags: O_RDWR | O_CREAT | O_EXCL, mode: 0o640)
        do {
            try f.truncate(to: capacity)
            try f.sync()
            try FlatReplica.writeDescriptor(cid: FlatDescriptor.randomCID(), capacity: capacity, files: files, in: directory)
            try directory.rename(files.flatSeed, to: files.flat)
            try directory.sync()
        } catch {
            f.close()
            _ = try? directory.remove(files.flatSeed)
            throw error
        }
        return FlatReplica(directory: directory, files: files, flat: f, capacity: capacity)
    }

    /// Data file first: a kill between the two leaves a lone descriptor, which recovery removes.
    public func removeUncommitted(_ files: DiskFiles) throws {
        var removed = try directory.remove(files.flat)
        removed = try directory.remove(files.descriptor) || removed
        if removed { try directory.sync() }
    }

    public func recordCID(_ cid: UInt32, of replica: FlatReplica) throws {
        try replica.writeDescriptor(cid: cid)
    }

    public func disks() throws -> [String] { DiskFiles.disks(in: try directory.entries()) }
}
