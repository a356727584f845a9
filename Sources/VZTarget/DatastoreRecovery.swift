import Logging
import VZCore
import VZPlatform

/// Finds passes that did not finish and settles them: rolls back the uncommitted ones and cleans
/// up after committed ones (Rollback decides which), and removes what an unfinished seed left.
/// Run by `vzrepl-target recover` (and the appliance's boot unit), by `rollback` (what
/// vzundo-script calls), and by each disk session for its own disk before its pass. Each disk is
/// recovered under its lock, so a live session's journal is never touched.
public enum DatastoreRecovery {
    public struct DiskOutcome: Sendable {
        public var job: String
        public var disk: String
        public var action: Rollback.Action
        public var reason: String
        public var restoredBytes: UInt64
        /// An unfinished seed's replica (never committed, no data) was removed.
        public var removedUnfinishedSeed = false
    }

    /// Recovers one disk of a job under its lock (waiting up to `lockWait` seconds for it).
    public static func recoverDisk(root: Directory, job: String, disk: String, lockWait: Double,
                                   logger: Logger) throws -> DiskOutcome {
        for (what, name) in [("job", job), ("disk", disk)] {
            if let why = NameRules.problem(with: name) { throw VZError(.badArgument, "\(what) name \(why)") }
        }
        let dir = try root.subdirectory(job, create: false)
        let files = DiskFiles(disk: disk)
        let lock = try DiskLock.acquire(directory: dir, files: files, wait: lockWait)
        defer { lock.release() }
        return try recoverLocked(store: FlatReplicaStore(directory: dir), job: job, files: files, logger: logger)
    }

    /// The same, for a caller that holds the disk's lock already.
    static func recoverLocked(store: FlatReplicaStore, job: String, files: DiskFiles, logger: Logger) throws -> DiskOutcome {
        let outcome = try Rollback.recover(directory: store.directory, disk: files.disk, logger: logger) {
            try store.open(files, expectedCapacity: nil)
        }
        var result = DiskOutcome(job: job, disk: files.disk, action: outcome.decision.action, reason: outcome.decision.reason,
                                 restoredBytes: outcome.restoredBytes)
        result.removedUnfinishedSeed = try removeUnfinishedSeed(store: store, files: files, logger: logger)
        return result
    }

    /// A seed that never committed leaves a replica without a map: after its rollback it holds no
    /// data. Such a replica is removed (it holds nothing to keep), so the next pass seeds afresh at
    /// whatever size the source has now, instead of refusing it as resized. A replica with data
    /// and no map is kept: it was committed once and lost its map (it is then hashed). A lone
    /// descriptor (a seed killed before its data file was renamed into place) is removed too.
    static func removeUnfinishedSeed(store: FlatReplicaStore, files: DiskFiles, logger: Logger) throws -> Bool {
        let dir = store.directory
        guard !dir.exists(files.map), !dir.exists(files.journal) else { return false }
        if let replica = try store.open(files, expectedCapacity: nil) {
            guard try replica.holdsNoData() else { return false }
        } else if !dir.exists(files.descriptor) {
            return false
        }
        try store.removeUncommitted(files)
        logger.notice("\(dir.path): disk \(files.disk) had an unfinished seed (a replica that never committed and holds no data); its files were removed, the next pass seeds it again")
        return true
    }

    /// Every disk of every job under the root. A disk whose lock is held by a live session is
    /// skipped (that session recovers it itself before its pass); other failures are thrown
    /// after the rest were tried.
    public static func recoverAll(rootPath: String, logger: Logger) throws -> [DiskOutcome] {
        let root = try Directory.openRoot(rootPath)
        var outcomes: [DiskOutcome] = []
        var firstError: Error?
        for job in try root.entries() where NameRules.problem(with: job) == nil {
            guard let dir = try? root.subdirectory(job, create: false) else { continue }
            do {
                if try JobDiskSet.removeLeftover(in: dir, job: job, lockWait: 0) {
                    logger.notice("\(job): removed a disk set record's leftover temp file")
                }
            } catch let e as VZError where e.kind == .locked {
                logger.info("\(job): a session holds the job's lock; it removes the leftover itself")
            }
            for disk in try FlatReplicaStore(directory: dir).disks() {
                do {
                    outcomes.append(try recoverDisk(root: root, job: job, disk: disk, lockWait: 0, logger: logger))
                } catch let e as VZError where e.kind == .locked {
                    logger.info("\(job)/\(disk): a session holds the disk; it recovers its own journal")
                } catch {
                    logger.failure("recovery failed", error, metadata: ["job": "\(job)", "disk": "\(disk)"])
                    firstError = firstError ?? error
                }
            }
        }
        if let e = firstError { throw e }
        return outcomes
    }
}
