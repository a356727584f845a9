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
    }

    public static func status(rootPath: String) throws -> [DiskStatus] {
        let root = try Directory.openRoot(rootPath)
        var out: [DiskStatus] = []
        for job in try root.entries() where NameRules.problem(with: job) == nil {
            guard let dir = try? root.subdirectory(job, create: false) else { continue }
            for name in try dir.entries() where name.hasSuffix("-flat.vmdk") {
                let disk = String(name.dropLast("-flat.vmdk".count))
                var s = DiskStatus(job: job, disk: disk, mapStatus: .missing, undo: .none)
                if let replica = try FlatReplicaStore(directory: dir).open(DiskFiles(disk: disk), expectedCapacity: nil) {
                    s.capacityBytes = replica.capacity
                    if let d = try? replica.readDescriptor() { s.cid = d.cidHex }
                }
                inspectMap(&s, in: dir)
                inspectJournal(&s, in: dir)
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
            // The header alone says which generation recovery sees, even when the entries are damaged.
            if let h = try? VzmapFile.decodeHeader(bytes, fileName: path) {
                s.blockSize = h.blockSize
                s.generation = h.generation
                s.lastCommit = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(h.createdUnixSeconds)))
            }
            let (header, _) = try VzmapFile.decode(bytes, fileName: path)
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
            s.undoStartGeneration = h.startGeneration
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
