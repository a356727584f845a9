import Logging
import VZCore
import VZFormats
import VZPlatform

/// The disk set the target records for a job (`JOB/vzdisks`, `DiskSetFile`): the VM's hardware
/// cannot change during replication, so a pass whose job adds or drops a disk fails before
/// anything is written (`hardwareChanged`, exit 3 on the source) until the target VM is
/// reconfigured the same way: `vzrepl-target add-disk` records a new disk (the next pass seeds
/// it), `remove-disk` deletes a dropped disk's replica and forgets it.
///
/// Every read, compare and write of the record happens under the job's lock (`JobLock`), so two
/// sessions of one job (parallel disks, each sending the same full set) never tear it. A job
/// that has no record yet: its first protocol-3 pass records the set it brings; a job replicated
/// before records existed (replicas, no record) is compared with the disks that have replicas,
/// and recorded when they agree.
public enum JobDiskSet {
    public static let fileName = "vzdisks"
    static var temporaryName: String { Directory.temporaryName(for: fileName) }

    /// The record as `status` shows it.
    public enum RecordStatus: String, Codable, Sendable { case recorded, none, damaged }

    /// The record alone, for `status`: read without the job's lock (a writer replaces it by an
    /// atomic rename, so a read sees one whole version), never throwing: a damaged or unreadable
    /// record is reported with the reason.
    static func readRecord(in directory: Directory) -> (status: RecordStatus, disks: [String]?, reason: String?) {
        let path = "\(directory.path)/\(fileName)"
        do {
            guard let bytes = try directory.readFile(fileName, maxSize: DiskSetFile.maxSize) else { return (.none, nil, nil) }
            return (.recorded, try DiskSetFile.decode(bytes, fileName: path).disks, nil)
        } catch {
            let message = (error as? VZError)?.message ?? "\(error)"
            return (.damaged, nil, "\(message): the job's disk set record is damaged, and its passes fail (corruptMap) until it is removed (rm \(path)): the next pass then compares the job with the replicas present and records the set again")
        }
    }

    /// What the record says, or, without one, the disks that have a replica (nil when neither).
    static func recorded(in directory: Directory) throws -> (disks: [String], fromRecord: Bool)? {
        if let bytes = try directory.readFile(fileName, maxSize: DiskSetFile.maxSize) {
            let path = "\(directory.path)/\(fileName)"
            do {
                return (try DiskSetFile.decode(bytes, fileName: path).disks, true)
            } catch let e as VZError {
                throw VZError(.corruptMap, "\(e.message): the job's disk set record is damaged. Remove it (rm \(path)): the next pass then compares the job with the replicas present and records the set again")
            }
        }
        let withReplicas = DiskFiles.disks(in: try directory.entries()).filter { directory.exists(DiskFiles(disk: $0).flat) }
        return withReplicas.isEmpty ? nil : (withReplicas, false)
    }

    /// The session's check (a `diskSet` from a protocol-3 source), before any disk is opened.
    /// Records the set when the job has none; throws `hardwareChanged` naming the added and
    /// removed disks, and what to do, when it differs from the recorded one, and naming every
    /// disk whose replica has another size than the source disk now has (both sizes).
    static func check(_ incoming: [Message.DiskSetEntry], directory: Directory, job: String, rootPath: String,
                      lockWait: Double, logger: Logger) throws {
        let lock = try JobLock.acquire(directory, job: job, wait: lockWait)
        defer { lock.release() }
        try directory.remove(temporaryName)  // a crashed writer's; harmless, but not left behind
        let names = incoming.map(\.name)
        // Every disk of the set, before any is opened: a resized later disk must not let an
        // earlier one of the same pass (or of a parallel session) commit first.
        let resized = try resizedDisks(incoming, store: FlatReplicaStore(directory: directory))
        guard let (recordedDisks, fromRecord) = try recorded(in: directory) else {
            try directory.writeAtomically(fileName, try DiskSetFile(disks: names).encode())
            logger.info("first pass of the job: recorded its disk set (\(names.sorted().joined(separator: ", ")))")
            return
        }
        let have = Set(recordedDisks), want = Set(names)
        guard have == want else {
            throw mismatch(added: incoming.filter { !have.contains($0.name) }, removed: recordedDisks.filter { !want.contains($0) },
                           resized: resized, recorded: recordedDisks, fromRecord: fromRecord, job: job, rootPath: rootPath)
        }
        if !resized.isEmpty { throw resizeMismatch(resized, job: job, rootPath: rootPath) }
        if !fromRecord {
            try directory.writeAtomically(fileName, try DiskSetFile(disks: names).encode())
            logger.notice("the job had replicas but no disk set record (replicated before records existed); recorded its disk set (\(recordedDisks.joined(separator: ", ")))")
        }
    }

    /// A disk of the set whose replica holds another size than the source disk has now.
    struct Resized: Equatable {
        var disk: String
        var source: UInt64
        var replica: UInt64
        var path: String
    }

    /// The disks of `incoming` that have a committed replica of another size (read-only: the
    /// replica's data file is opened O_RDONLY and only its size and holes are looked at).
    static func resizedDisks(_ incoming: [Message.DiskSetEntry], store: FlatReplicaStore) throws -> [Resized] {
        try incoming.compactMap { d in
            let files = DiskFiles(disk: d.name)
            guard let have = try store.committedCapacity(files), have != d.capacity else { return nil }
            return Resized(disk: d.name, source: d.capacity, replica: have, path: "\(store.directory.path)/\(files.flat)")
        }
    }

    /// What to do about each resized disk: grow the replica with `resize`; a shrunk disk cannot
    /// be followed (resize refuses to drop data), so its replica is dropped and seeded again.
    static func resizeParts(_ resized: [Resized], job: String, rootPath: String) -> [String] {
        let root = rootPath.isEmpty ? "ROOT" : rootPath
        return resized.map { r in
            let what = "disk '\(r.disk)' has \(r.source) bytes on the source but its replica \(r.path) holds \(r.replica) bytes"
            if r.source > r.replica {
                return "\(what): the disk grew; grow the target VM's disk the same way first, with `vzrepl-target resize --root \(root) --job \(job) --disk \(r.disk) --capacity \(r.source)`"
            }
            return "\(what): the disk shrank, and shrinking a replica is refused (it would drop data); to replicate the smaller disk, drop its replica and seed it again, with `vzrepl-target remove-disk --root \(root) --job \(job) --disk \(r.disk); vzrepl-target add-disk --root \(root) --job \(job) --disk \(r.disk)` (copy the replica away first to keep it)"
        }
    }

    static func resizeMismatch(_ resized: [Resized], job: String, rootPath: String) -> VZError {
        VZError(.hardwareChanged, "job '\(job)': the VM's hardware changed: "
                + resizeParts(resized, job: job, rootPath: rootPath).joined(separator: "; ") + "; then run the pass again. Nothing was written")
    }

    static func mismatch(added: [Message.DiskSetEntry], removed: [String], resized: [Resized] = [], recorded: [String], fromRecord: Bool,
                         job: String, rootPath: String) -> VZError {
        var parts: [String] = []
        let root = rootPath.isEmpty ? "ROOT" : rootPath
        if !added.isEmpty {
            let list = added.map { "'\($0.name)' (\($0.capacity) bytes)" }.joined(separator: ", ")
            let commands = added.map { "vzrepl-target add-disk --root \(root) --job \(job) --disk \($0.name)" }.joined(separator: "; ")
            parts.append("the job adds disk\(added.count > 1 ? "s" : "") \(list): add \(added.count > 1 ? "them" : "it") to the target VM the same way first, with `\(commands)` (the next pass seeds \(added.count > 1 ? "them" : "it"))")
        }
        if !removed.isEmpty {
            let list = removed.map { "'\($0)'" }.joined(separator: ", ")
            let commands = removed.map { "vzrepl-target remove-disk --root \(root) --job \(job) --disk \($0)" }.joined(separator: "; ")
            parts.append("the job no longer has disk\(removed.count > 1 ? "s" : "") \(list): remove \(removed.count > 1 ? "them" : "it") from the target VM the same way first, with `\(commands)` (deletes the replica; copy it away first to keep it), or put the disk back in the job")
        }
        parts += resizeParts(resized, job: job, rootPath: rootPath)
        let what = fromRecord ? "the disk set the target recorded for job '\(job)'" : "the disks job '\(job)' has replicas of"
        return VZError(.hardwareChanged, "the job's disks differ from \(what) (\(recorded.joined(separator: ", "))): the VM's hardware changed. "
                       + parts.joined(separator: "; ") + "; then run the pass again. Nothing was written")
    }

    public struct Outcome: Sendable {
        /// The disk set after the command.
        public var disks: [String]
        /// false: the command found nothing to do (the disk was in the set already, or not any more).
        public var changed: Bool
        /// remove-disk: the replica's files that were deleted.
        public var removedFiles: [String] = []
    }

    /// `vzrepl-target add-disk`: records `disk` in the job's set, so the next pass seeds it.
    public static func add(disk: String, root: Directory, job: String, lockWait: Double, logger: Logger) throws -> Outcome {
        try checkNames(job: job, disk: disk)
        guard let directory = try? root.subdirectory(job, create: false) else {
            throw VZError(.badArgument, "\(root.path)/\(job): no such job: its first pass records all of its disks; add-disk is for a disk added to a job later")
        }
        let lock = try JobLock.acquire(directory, job: job, wait: lockWait)
        defer { lock.release() }
        guard let (disks, fromRecord) = try recorded(in: directory) else {
            throw VZError(.badArgument, "job '\(job)' has no disk set yet (no pass recorded one): its first pass records all of its disks; add-disk is for a disk added to a job later")
        }
        if disks.contains(disk) && fromRecord { return Outcome(disks: disks, changed: false) }
        let set = try DiskSetFile(disks: Array(Set(disks + [disk])))
        try directory.writeAtomically(fileName, set.encode())
        logger.notice("job \(job): disk \(disk) added to the disk set (\(set.disks.joined(separator: ", "))); the next pass seeds it")
        return Outcome(disks: set.disks, changed: true)
    }

    /// `vzrepl-target remove-disk`: deletes the replica of `disk` (every file the disk owns, an
    /// unfinished pass's journal too) and drops it from the job's set. Under the disk's lock (a
    /// running session of the disk is waited for, then refused) and the job's. Files first, then
    /// the record: interrupted, the disk stays in the set and the command is run again.
    public static func remove(disk: String, root: Directory, job: String, lockWait: Double, logger: Logger) throws -> Outcome {
        try checkNames(job: job, disk: disk)
        guard let directory = try? root.subdirectory(job, create: false) else {
            throw VZError(.badArgument, "\(root.path)/\(job): no such job")
        }
        let files = DiskFiles(disk: disk)
        let diskLock = try DiskLock.acquire(directory: directory, files: files, wait: lockWait)
        defer { diskLock.release() }
        let lock = try JobLock.acquire(directory, job: job, wait: lockWait)
        defer { lock.release() }
        let before = try recorded(in: directory)
        var removed: [String] = []
        for name in files.all where name != files.lock && directory.exists(name) {
            try directory.remove(name)
            removed.append(name)
        }
        try RollbackScript.removeIfUnused(in: directory, disk: disk)
        try directory.remove(files.lock)  // held until the release; nothing else opens it meanwhile
        try directory.sync()
        var disks = before?.disks ?? []
        let inSet = disks.contains(disk)
        disks.removeAll { $0 == disk }
        if inSet || before?.fromRecord == false {
            if disks.isEmpty {
                if try directory.remove(fileName) { try directory.sync() }
            } else {
                try directory.writeAtomically(fileName, try DiskSetFile(disks: disks).encode())
            }
        }
        if !inSet && removed.isEmpty { return Outcome(disks: disks, changed: false) }
        logger.notice("job \(job): disk \(disk) removed: \(removed.isEmpty ? "it had no replica files" : "deleted \(removed.joined(separator: ", "))"); disk set now \(disks.isEmpty ? "empty (the next pass records a new one)" : disks.joined(separator: ", "))")
        return Outcome(disks: disks, changed: true, removedFiles: removed)
    }

    private static func checkNames(job: String, disk: String) throws {
        if let why = NameRules.problem(with: job) { throw VZError(.badArgument, "job name \(why)") }
        if let why = NameRules.problem(withDisk: disk) { throw VZError(.badArgument, "disk name \(why)") }
    }

    /// Removes a crashed writer's `.vzdisks.tmp` (recovery; under the job's lock).
    static func removeLeftover(in directory: Directory, job: String, lockWait: Double) throws -> Bool {
        guard directory.exists(temporaryName) else { return false }
        let lock = try JobLock.acquire(directory, job: job, wait: lockWait)
        defer { lock.release() }
        guard try directory.remove(temporaryName) else { return false }
        try directory.sync()
        return true
    }
}
