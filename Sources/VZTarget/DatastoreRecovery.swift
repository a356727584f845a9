import Logging
import VZCore
import VZPlatform

/// Finds passes that did not finish and settles them: rolls back the uncommitted ones and cleans
/// up after committed ones (Rollback decides which). Run by `vzrepl-target recover`, at every
/// `serve` start, by `rollback` (what vzundo-script calls), and before each disk session.
/// Each disk is recovered under its lock, so a live session's journal is never touched.
public enum DatastoreRecovery {
    public struct DiskOutcome: Sendable {
        public var job: String
        public var disk: String
        public var action: Rollback.Action
        public var reason: String
        public var restoredBytes: UInt64
    }

    /// Recovers one disk of a job under its lock (waiting up to `lockWait` seconds for it).
    public static func recoverDisk(root: Directory, job: String, disk: String, lockWait: Double,
                                   logger: Logger) throws -> DiskOutcome {
        for (what, name) in [("job", job), ("disk", disk)] {
            if let why = NameRules.problem(with: name) { throw VZError(.badArgument, "\(what) name \(why)") }
        }
        let dir = try root.subdirectory(job, create: false)
        let lock = try DiskLock.acquire(directory: dir, disk: disk, wait: lockWait)
        defer { lock.release() }
        return try recoverLocked(directory: dir, job: job, disk: disk, logger: logger)
    }

    /// The same, for a caller that holds the disk's lock already.
    static func recoverLocked(directory: Directory, job: String, disk: String, logger: Logger) throws -> DiskOutcome {
        let outcome = try Rollback.recover(directory: directory, disk: disk, logger: logger) {
            try FlatReplica.open(in: directory, disk: disk, expectedCapacity: nil)
        }
        return DiskOutcome(job: job, disk: disk, action: outcome.decision.action, reason: outcome.decision.reason,
                           restoredBytes: outcome.restoredBytes)
    }

    /// Every disk under the root that has a journal. A disk whose lock is held by a live session
    /// is skipped (that session recovers it itself before its pass); other failures are thrown
    /// after the rest were tried.
    public static func recoverAll(rootPath: String, logger: Logger) throws -> [DiskOutcome] {
        let root = try Directory.openRoot(rootPath)
        var outcomes: [DiskOutcome] = []
        var firstError: Error?
        for job in try root.entries() where NameRules.problem(with: job) == nil {
            guard let dir = try? root.subdirectory(job, create: false) else { continue }
            for disk in try disksToRecover(in: dir) {
                do {
                    outcomes.append(try recoverDisk(root: root, job: job, disk: disk, lockWait: 0, logger: logger))
                } catch let e as VZError where e.kind == .locked {
                    logger.info("\(job)/\(disk): a session holds the disk; it recovers its own journal")
                } catch {
                    logger.error("\(job)/\(disk): recovery failed: \(error)")
                    firstError = firstError ?? error
                }
            }
        }
        if let e = firstError { throw e }
        return outcomes
    }

    /// Disks with a journal, and every disk with a replica or a lock file: recovering a disk
    /// without a journal only removes what a crash left (temp files, a lone vzundo-script).
    static func disksToRecover(in dir: Directory) throws -> [String] {
        var disks = Set(try Rollback.disksWithJournals(in: dir))
        for name in try dir.entries() {
            for suffix in ["-flat.vmdk", ".vzlock"] where name.hasSuffix(suffix) {
                disks.insert(String(name.dropLast(suffix.count)))
            }
        }
        return disks.filter { NameRules.problem(with: $0) == nil }.sorted()
    }
}
