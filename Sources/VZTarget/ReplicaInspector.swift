import Foundation
import Glibc
import VZCore
import VZFormats
import VZPlatform

/// The read-only commands of the target: `status` (what the datastore holds) and `verify`
/// (re-hash a replica against its map).
public enum ReplicaInspector {
    /// One replica as `status --json` prints it. Field names and values are those of the
    /// source's events (Docs/events.md): `capacityBytes`, `blockSize`, `generation`, `mapStatus`.
    public struct DiskStatus: Codable, Sendable {
        /// The `.vzmap` beside the replica: `valid` (the whole file passed its checks),
        /// `corrupt` (it did not, or it describes another size than the replica), `missing`.
        public enum MapStatus: String, Codable, Sendable { case valid, corrupt, missing }
        /// The `.vzundo` beside the replica: `none`; `pending` (a pass did not finish, or did not
        /// clean up: `undoAction` says what recovery will do); `corrupt` (its header is damaged,
        /// which blocks recovery: Docs/operations.md).
        public enum UndoStatus: String, Codable, Sendable { case none, pending, corrupt }

        public var job: String
        public var disk: String
        public var capacityBytes: UInt64?
        public var blockSize: UInt32?
        public var generation: UInt64?
        public var lastCommit: String?
        public var cid: String?
        public var mapStatus: MapStatus
        /// Why the map is not valid.
        public var mapReason: String?
        public var undo: UndoStatus
        /// From the journal's header: the map generation the pass started from, and its pass id.
        public var undoStartGeneration: UInt64?
        public var undoPassId: String?
        /// What recovery will do with the journal (`rollBack`, `rollBackAndDropMap`,
        /// `discardJournal`), and why; for a corrupt journal, what is wrong with it.
        public var undoAction: String?
        public var undoReason: String?
        /// The source chain the last commit came from, leaf first, as `.vzcid` records it (the
        /// `chain` of `disk-started`); empty for a raw source; nil when not recorded (a source of
        /// protocol 1 or 2, or a record from before chains were recorded).
        public var chain: [ChainLink]?

        public struct ChainLink: Codable, Sendable, Equatable {
            public var file: String
            public var cid: String
            public var parentCID: String
        }
        /// An uncommitted pass is pending: its journal is there (`undo` pending).
        public var pending = false
        /// From the journal's header: when the pending pass started; and the journal's size.
        public var undoStartedAt: String?
        public var undoBytes: UInt64?
        /// The `.vzmap`'s size in bytes and entries.
        public var mapBytes: UInt64?
        public var mapEntries: UInt64?
        /// The last committed pass, from `DISK.vzpass` (Docs/formats.md §7); nil when there is
        /// none (a replica from before the record, or none committed) or it is damaged.
        public var lastPass: LastPass?
        /// Why `lastPass` is missing or is not the pass that committed the map's generation.
        public var lastPassNote: String?
        /// The CBT change id recorded at the last commit: always nil until CBT exists (printed as null).
        public var cbtChangeId: String?
        /// false: a disk of the job's recorded disk set that has no replica yet (added with
        /// `add-disk`; the next pass seeds it). Only `job`, `disk` and the disk-set fields are set.
        public var replica = true
        /// The job's disk set record (`JOB/vzdisks`), the same on each of the job's disks:
        /// `recorded`, `none` (no pass of a protocol-3 source recorded one yet), `damaged`.
        public var diskSetStatus: JobDiskSet.RecordStatus = .none
        /// The recorded disk names (sorted); nil when there is no readable record.
        public var diskSet: [String]?
        /// Why the record is damaged, and what to do.
        public var diskSetReason: String?
        /// Whether the record lists this disk; nil when there is no readable record. A replica
        /// outside the set fails the job's passes (`hardwareChanged`) until the set agrees.
        public var inDiskSet: Bool?
    }

    public struct LastPass: Codable, Sendable, Equatable {
        public var generation: UInt64
        public var committedAt: String
        public var startedAt: String
        public var seconds: Double
        public var scannedBytes: UInt64
        public var changedBytes: UInt64
        public var zeroBytes: UInt64
        public var passId: String?
    }

    static func iso(millis: UInt64) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: Double(millis) / 1000))
    }

    public static func status(rootPath: String) throws -> [DiskStatus] {
        let root = try Directory.openRoot(rootPath)
        var out: [DiskStatus] = []
        for job in try root.entries() where NameRules.problem(with: job) == nil {
            guard let dir = try? root.subdirectory(job, create: false) else { continue }
            let set = JobDiskSet.readRecord(in: dir)
            func withSet(_ s: inout DiskStatus) {
                s.diskSetStatus = set.status
                s.diskSet = set.disks
                s.diskSetReason = set.reason
                s.inDiskSet = set.disks.map { $0.contains(s.disk) }
            }
            var seen: Set<String> = []
            for name in try dir.entries() where name.hasSuffix("-flat.vmdk") {
                let disk = String(name.dropLast("-flat.vmdk".count))
                seen.insert(disk)
                var s = DiskStatus(job: job, disk: disk, mapStatus: .missing, undo: .none)
                withSet(&s)
                let store = FlatReplicaStore(directory: dir)
                if let replica = try store.open(DiskFiles(disk: disk), expectedCapacity: nil) {
                    s.capacityBytes = replica.capacity
                    if let d = try? replica.readDescriptor() { s.cid = d.cidHex }
                }
                s.chain = store.cidRecord(DiskFiles(disk: disk))?.chain?.map {
                    DiskStatus.ChainLink(file: $0.file, cid: String(format8: $0.cid), parentCID: String(format8: $0.parentCID))
                }
                inspectMap(&s, in: dir)
                inspectJournal(&s, in: dir)
                inspectPassRecord(&s, in: dir)
                out.append(s)
            }
            for disk in set.disks ?? [] where !seen.contains(disk) {
                var s = DiskStatus(job: job, disk: disk, mapStatus: .missing, undo: .none)
                s.replica = false
                withSet(&s)
                out.append(s)
            }
        }
        return out
    }

    /// The whole map is checked, header, entries and trailer (`VzmapFile.decode`), in a read
    /// bounded by the size a map of this replica can have.
    private static func inspectMap(_ s: inout DiskStatus, in dir: Directory) {
        let name = Rollback.mapName(disk: s.disk)
        let path = "\(dir.path)/\(name)"
        guard dir.exists(name) else { s.mapReason = "\(path) is missing"; return }
        do {
            let capacity = s.capacityBytes ?? 0
            let limit = Int(VzmapFile.fileSize(entryCount: capacity / UInt64(JobConfig.minBlockSize) + 1))
            guard let bytes = try dir.readFile(name, maxSize: limit) else { s.mapReason = "\(path) is missing"; return }
            s.mapBytes = UInt64(bytes.count)
            // The header alone says which generation recovery sees, even when the entries are damaged.
            if let h = try? VzmapFile.decodeHeader(bytes, fileName: path) {
                s.blockSize = h.blockSize
                s.generation = h.generation
                s.lastCommit = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(h.createdUnixSeconds)))
            }
            let (header, map) = try VzmapFile.decode(bytes, fileName: path)
            s.mapEntries = UInt64(map.count)
            guard header.capacity == capacity else {
                s.mapStatus = .corrupt
                s.mapReason = "\(path) describes \(header.capacity) bytes, the replica has \(capacity)"
                return
            }
            s.mapStatus = .valid
        } catch {
            s.mapStatus = .corrupt
            s.mapReason = (error as? VZError)?.message ?? "\(error)"
        }
    }

    private static func inspectJournal(_ s: inout DiskStatus, in dir: Directory) {
        do {
            guard let h = try Rollback.readJournalHeader(directory: dir, disk: s.disk) else { return }
            s.undo = .pending
            s.pending = true
            s.undoStartGeneration = h.startGeneration
            s.undoStartedAt = iso(millis: h.createdUnixSeconds * 1000)
            if let f = try? dir.openIfExists(DiskFiles(disk: s.disk).journal, flags: O_RDONLY) { s.undoBytes = try? f.size() }
            s.undoPassId = PassIdentifier.string(of: h.passID.bytes)
            // As recovery decides: from the map header's generation.
            let mapGeneration = s.mapStatus == .missing ? nil : s.generation
            let decision = Rollback.decide(journalStartGeneration: h.startGeneration, mapGeneration: mapGeneration)
            s.undoAction = decision.action.rawValue
            s.undoReason = decision.reason
        } catch {
            s.undo = .corrupt
            s.undoReason = ((error as? VZError)?.message ?? "\(error)")
                + " — recovery cannot use this journal; Docs/operations.md says what to do"
        }
    }

    /// The record of the last committed pass; it describes the map only when their generations agree.
    private static func inspectPassRecord(_ s: inout DiskStatus, in dir: Directory) {
        let files = DiskFiles(disk: s.disk)
        let path = "\(dir.path)/\(files.passRecord)"
        do {
            guard let bytes = try dir.readFile(files.passRecord, maxSize: PassRecordFile.size) else {
                if s.generation != nil { s.lastPassNote = "no pass record (\(path)): the replica's last commit predates it" }
                return
            }
            let r = try PassRecordFile.decode(bytes, fileName: path)
            if let g = s.generation, r.generation != g {
                s.lastPassNote = "\(path) describes generation \(r.generation), the map is at \(g): the agent stopped between that commit and its record"
                return
            }
            s.lastPass = LastPass(generation: r.generation, committedAt: iso(millis: r.committedUnixMillis), startedAt: iso(millis: r.startedUnixMillis),
                                  seconds: Double(r.committedUnixMillis >= r.startedUnixMillis ? r.committedUnixMillis - r.startedUnixMillis : 0) / 1000, scannedBytes: r.scannedBytes,
                                  changedBytes: r.changedBytes, zeroBytes: r.zeroBytes, passId: r.passIdString)
        } catch {
            s.lastPassNote = ((error as? VZError)?.message ?? "\(error)") + ": the pass record is damaged (it is rewritten at the next commit)"
        }
    }

    public struct Mismatch: Error, CustomStringConvertible {
        public var block: Int
        public var offset: UInt64
        public var expected: BlockMap.Entry
        public var actual: BlockMap.Entry
        public var description: String {
            "block \(block) (offset \(offset)): map says \(describe(expected)), replica has \(describe(actual))"
        }
        public var expectedDescription: String { describe(expected) }
        public var actualDescription: String { describe(actual) }
        private func describe(_ e: BlockMap.Entry) -> String {
            switch e.kind {
            case .zero: return "zeros"
            case .unknown: return "unknown"
            case .data: return "sha256 \(e.hash)"
            }
        }
    }

    /// Re-hashes the replica of `disk` and compares every block with its map; throws `Mismatch`
    /// at the first difference, or a `VZError` when the map is missing or corrupt.
    public static func verify(rootPath: String, job: String, disk: String, workers: Int = 2) throws -> (blocks: Int, generation: UInt64) {
        for (what, name) in [("job", job), ("disk", disk)] {
            if let why = NameRules.problem(with: name) { throw VZError(.badArgument, "\(what) name \(why)") }
        }
        let root = try Directory.openRoot(rootPath)
        let dir = try root.subdirectory(job, create: false)
        guard let replica = try FlatReplicaStore(directory: dir).open(DiskFiles(disk: disk), expectedCapacity: nil) else {
            throw VZError(.badArgument, "\(dir.path): no replica of disk '\(disk)'")
        }
        let mapName = "\(disk).vzmap"
        guard let bytes = try dir.readFile(mapName, maxSize: Int(VzmapFile.fileSize(entryCount: replica.capacity / UInt64(JobConfig.minBlockSize) + 1))) else {
            throw VZError(.corruptMap, "\(dir.path)/\(mapName) is missing")
        }
        let (header, map) = try VzmapFile.decode(bytes, fileName: "\(dir.path)/\(mapName)")
        guard header.capacity == replica.capacity else {
            throw VZError(.corruptMap, "\(dir.path)/\(mapName) describes \(header.capacity) bytes, the replica has \(replica.capacity)")
        }
        _ = try ReplicaHasher.hash(replica, blockSize: header.blockSize, workers: workers) { index, actual in
            let expected = map[index]
            if expected != actual {
                throw Mismatch(block: index, offset: UInt64(index) * UInt64(header.blockSize), expected: expected, actual: actual)
            }
        }
        return (map.count, header.generation)
    }
}
