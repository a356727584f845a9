import Foundation
import Logging
import VZCore
import VZFormats
import VZPlatform

/// `vzrepl-target resize`: the reconfiguration of a replica for a grown source disk (the VM's
/// hardware changed; the target VM's disk must grow the same way before the next pass). The
/// replica's data file, its descriptor and its map grow; shrinking is refused (it would drop
/// data the source may still hold). Under the disk's lock, after recovering any unfinished pass.
public enum ReplicaResize {
    public struct Outcome: Sendable {
        public var oldCapacity: UInt64
        public var newCapacity: UInt64
        /// The map was grown (the new blocks are zero); false: there was no valid map, and the
        /// next pass hashes the replica.
        public var mapKept: Bool
    }

    /// Order: the data file grows first, then the descriptor and CID record, then the map. A crash
    /// after the data file leaves a map of the old size beside a larger replica, which the next
    /// pass does not trust (it hashes the replica): safe. Running the command again finishes it.
    public static func grow(root: Directory, job: String, disk: String, capacity: UInt64, lockWait: Double,
                            logger: Logger) throws -> Outcome {
        for (what, name) in [("job", job), ("disk", disk)] {
            if let why = NameRules.problem(with: name) { throw VZError(.badArgument, "\(what) name \(why)") }
        }
        guard capacity > 0, capacity % JobConfig.sectorSize == 0, capacity <= VMDKDescriptor.maxSectors * 512 else {
            throw VZError(.badArgument, "--capacity \(capacity) is not a disk size: a positive multiple of 512 bytes, at most 1 PiB")
        }
        let dir = try root.subdirectory(job, create: false)
        let files = DiskFiles(disk: disk)
        let lock = try DiskLock.acquire(directory: dir, files: files, wait: lockWait)
        defer { lock.release() }
        let store = FlatReplicaStore(directory: dir)
        let recovered = try DatastoreRecovery.recoverLocked(store: store, job: job, files: files, logger: logger)
        if recovered.action != .nothingToDo { logger.notice("recovered an unfinished pass first: \(recovered.action) (\(recovered.reason))") }
        guard let replica = try store.open(files, expectedCapacity: nil) else {
            throw VZError(.badArgument, "\(dir.path): disk '\(disk)' has no replica to resize (the first pass creates it at the source's size)")
        }
        let old = replica.capacity
        guard capacity >= old else {
            throw VZError(.targetRefused, "\(replica.displayName) holds \(old) bytes; shrinking it to \(capacity) is refused (it would drop data). To replicate a smaller disk, remove the replica's files \(files.descriptor), \(files.flat), \(files.map), \(files.cidRecord) and seed again")
        }
        if capacity == old { return Outcome(oldCapacity: old, newCapacity: capacity, mapKept: true) }

        // The map of the old geometry, grown: old entries kept, new blocks zero (holes), and a
        // short old last block, which now reads longer, unknown.
        var grown: (BlockMap, UInt64)?
        let path = "\(dir.path)/\(files.map)"
        if let header = try MapStore.readHeader(directory: dir, files: files).header, header.capacity == old,
           let bytes = try dir.readFile(files.map, maxSize: Int(VzmapFile.fileSize(entryCount: header.entryCount))),
           let (h, map) = try? VzmapFile.decode(bytes, fileName: path) {
            var m = BlockMap(blockSize: h.blockSize, capacity: capacity, filledWith: .zero)
            for i in 0..<map.count { m[i] = map[i] }
            if old % UInt64(h.blockSize) != 0, map.count > 0 { m[map.count - 1] = .unknown }
            grown = (m, h.generation)
        }
        try replica.flat.truncate(to: capacity)
        try replica.flat.sync()
        guard let resized = try store.open(files, expectedCapacity: capacity) else {
            throw VZError(.replicaIO, "\(replica.displayName) disappeared while it was resized")
        }
        // The replica still holds what the recorded chain gave it: keep the chain.
        try store.recordCID(FlatDescriptor.randomCID(), generation: grown?.1 ?? 0, chain: store.cidRecord(files)?.chain, of: resized)
        if let (m, generation) = grown {
            try MapStore.write(m, generation: generation, directory: dir, files: files)
        }
        logger.notice("resized \(replica.displayName) from \(old) to \(capacity) bytes; map \(grown == nil ? "not valid: the next pass hashes the replica" : "grown")")
        return Outcome(oldCapacity: old, newCapacity: capacity, mapKept: grown != nil)
    }
}
