import Glibc
import VZCore
import VZFormats
import VZPlatform

/// The replicas of one job as flat VMDKs in the job's directory under the datastore root.
public final class FlatReplicaStore: ReplicaStore {
    public let directory: Directory

    public init(directory: Directory) { self.directory = directory }

    public func open(_ files: DiskFiles, expectedCapacity: UInt64?) throws -> FlatReplica? {
        try open(files, expectedCapacity: expectedCapacity, readOnly: false)
    }

    /// With `readOnly` (`plan`), the data file is opened O_RDONLY: a write through it would fail.
    public func open(_ files: DiskFiles, expectedCapacity: UInt64?, readOnly: Bool) throws -> FlatReplica? {
        guard let f = try directory.openIfExists(files.flat, flags: readOnly ? O_RDONLY : O_RDWR) else { return nil }
        let size = try f.size()
        if let want = expectedCapacity, size != want {
            throw VZError(.hardwareChanged, "disk '\(files.disk)': the source disk has \(want) bytes but its replica \(f.path) holds \(size): the VM's hardware changed. Reconfigure the target VM's disk to the new size (`vzrepl-target resize --job JOB --disk \(files.disk) --capacity \(want)` for a grown disk; or, to seed again, remove the replica's files \(files.descriptor), \(files.flat), \(files.map)), then run the pass again")
        }
        return FlatReplica(directory: directory, files: files, flat: f, capacity: size)
    }

    /// The size of the disk's committed replica, read through a read-only open (the disk-set
    /// check: under the job's lock, not the disk's; nothing is written). nil when the disk has
    /// no replica, or only what recovery removes at the disk's next session (an unfinished seed:
    /// no map, and a journal or no data), whose size the source need not match.
    public func committedCapacity(_ files: DiskFiles) throws -> UInt64? {
        guard let replica = try open(files, expectedCapacity: nil, readOnly: true) else { return nil }
        defer { replica.flat.close() }
        if !directory.exists(files.map), try directory.exists(files.journal) || replica.holdsNoData() { return nil }
        return replica.capacity
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

    /// The record first (with the descriptor's current CID as the previous one), then the
    /// descriptor: a crash or a failure between the two leaves the descriptor at the record's
    /// previous CID, which the next pass accepts.
    public func recordCID(_ cid: UInt32, generation: UInt64, chain: [SourceChainLink]?, of replica: FlatReplica) throws {
        let previous = (try? replica.readDescriptor())??.cid ?? cid
        try directory.writeAtomically(replica.files.cidRecord,
                                      CIDRecordFile(cid: cid, previousCID: previous, generation: generation, chain: chain).encode())
        try replica.writeDescriptor(cid: cid)
    }

    /// The disk's CID record, nil when there is none or it cannot be read (`status`, `resize`).
    public func cidRecord(_ files: DiskFiles) -> CIDRecordFile? {
        guard let bytes = try? directory.readFile(files.cidRecord, maxSize: CIDRecordFile.maxSize) else { return nil }
        return try? CIDRecordFile.decode(bytes, fileName: "\(directory.path)/\(files.cidRecord)")
    }

    public func outOfBandChange(of replica: FlatReplica) throws -> String? {
        let path = "\(directory.path)/\(replica.files.cidRecord)"
        let recordBytes: [UInt8]?
        do {
            recordBytes = try directory.readFile(replica.files.cidRecord, maxSize: CIDRecordFile.maxSize)
        } catch let e as VZError where e.message.contains("more than the") {
            return "\(e.message): the CID record is damaged"
        }
        guard let bytes = recordBytes else { return nil }  // a replica from before CID records
        let record: CIDRecordFile
        do { record = try CIDRecordFile.decode(bytes, fileName: path) } catch let e as VZError {
            return "\(e.message): the CID record is damaged"
        }
        let descriptor: FlatDescriptor?
        do { descriptor = try replica.readDescriptor() } catch let e as VZError {
            return "the replica's descriptor cannot be read (\(e.message))"
        }
        guard let d = descriptor else { return "the replica's descriptor \(replica.files.descriptor) is missing" }
        guard record.accepts(d.cid) else {
            return "the replica's descriptor has CID \(d.cidHex), the target recorded \(FlatDescriptor(cid: record.cid, capacity: 0, flatFileName: "").cidHex) at generation \(record.generation): it was written outside vzrepl (powered on, edited)"
        }
        return nil
    }

    public func disks() throws -> [String] { DiskFiles.disks(in: try directory.entries()) }
}
