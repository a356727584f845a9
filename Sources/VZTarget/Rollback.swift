import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform

/// Recovery of a disk whose pass did not finish: decides from `DISK.vzundo` and `DISK.vzmap`
/// whether the pass committed, and either rolls the replica back to the pass's start or only
/// removes the leftover journal.
///
/// The session commits in this order (Docs/operations.md): flush the replica, write the new
/// `.vzmap` atomically with generation start + 1 (its rename is the commit point), record the
/// CID, then `UndoJournal.discard()`. So a journal beside a map of a greater generation than the
/// journal's start belongs to a committed pass; otherwise the pass did not commit.
///
/// Everything here is idempotent: killed at any point and run again, it ends in the same state.
/// Originals are rewritten (the same bytes again), and the journal is removed only after the
/// replica is flushed. The caller holds the disk's lock.
public enum Rollback {
    public enum Action: String, Sendable {
        /// No journal: the last pass finished (committed and cleaned up, or rolled back).
        case nothingToDo
        /// The pass did not commit (or that cannot be proven): restore the originals.
        case rollBack
        /// The map is older than the pass's start, so it does not describe the replica at any
        /// state recovery can produce: roll back and remove the map (it is then rebuilt by
        /// hashing the replica).
        case rollBackAndDropMap
        /// The pass committed before its journal was removed: remove the journal, keep the replica.
        case discardJournal
    }

    public struct Decision: Equatable, Sendable {
        public var action: Action
        public var reason: String
    }

    /// The decision, from the journal header's start generation (nil: no journal) and the map
    /// header's generation (nil: the map is missing or fails its checks).
    public static func decide(journalStartGeneration: UInt64?, mapGeneration: UInt64?) -> Decision {
        guard let start = journalStartGeneration else {
            return Decision(action: .nothingToDo, reason: "no undo journal: the last pass finished")
        }
        guard let map = mapGeneration else {
            return Decision(action: .rollBack, reason: "the map is missing or corrupt, so the pass that started from generation \(start) cannot be proven committed: rolling back (the map is then rebuilt)")
        }
        if map > start {
            return Decision(action: .discardJournal, reason: "the map is at generation \(map), after the pass's start generation \(start): the pass committed, only its journal was left")
        }
        if map == start {
            return Decision(action: .rollBack, reason: "the map is still at generation \(start), where the pass started: the pass did not commit")
        }
        return Decision(action: .rollBackAndDropMap, reason: "the map is at generation \(map), older than the pass's start generation \(start): it was replaced; rolling back and dropping the map")
    }

    public static func mapName(disk: String) -> String { DiskFiles(disk: disk).map }

    /// True when `DISK.vzundo` exists: a pass of this disk did not finish (or finished without
    /// removing its journal); `recover` sorts out which.
    public static func hasUncommittedPass(directory: Directory, disk: String) -> Bool {
        directory.exists(UndoJournal.fileName(disk: disk))
    }

    /// The disks of a job directory that have a `DISK.vzundo` (for `recover --root`).
    public static func disksWithJournals(in directory: Directory) throws -> [String] {
        try directory.entries().filter(RollbackScript.isJournal).map { String($0.dropLast(".vzundo".count)) }
    }

    /// The journal's header, nil when there is no journal. A bad header is `.corruptJournal`.
    public static func readJournalHeader(directory: Directory, disk: String) throws -> UndoJournalFormat.Header? {
        let name = UndoJournal.fileName(disk: disk)
        guard let f = try directory.openIfExists(name, flags: O_RDONLY) else { return nil }
        let n = Int(min(try f.size(), UInt64(UndoJournalFormat.headerSize)))
        var bytes = [UInt8](repeating: 0, count: n)
        try bytes.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
        return try UndoJournalFormat.decodeHeader(bytes, fileName: f.path)
    }

    /// The map's generation, or nil (with why) when the map is missing or fails its header checks.
    /// Reads only the 64-byte header. An I/O error is thrown, not taken for "missing": rolling back
    /// a committed pass because its map could not be read would leave a map that does not describe
    /// the replica.
    public static func readMapGeneration(directory: Directory, disk: String) throws -> (generation: UInt64?, note: String) {
        let (header, note) = try MapStore.readHeader(directory: directory, files: DiskFiles(disk: disk))
        return (header?.generation, note)
    }

    public struct Outcome: Equatable, Sendable {
        public var decision: Decision
        public var dataRecords: UInt64 = 0
        public var zeroRecords: UInt64 = 0
        /// Bytes of the disk put back (data and zero records).
        public var restoredBytes: UInt64 = 0
        /// Records of a block met before in the same journal (none from this writer): skipped.
        public var duplicateRecords: UInt64 = 0
        /// Bytes after the last valid record (a torn tail), and why the records stopped there.
        public var ignoredTailBytes: UInt64 = 0
        public var tail: UndoJournalDecoder.TailReason?

        public init(decision: Decision) { self.decision = decision }
    }

    /// Recovers one disk: decides, then rolls back or removes the leftover journal; also removes
    /// leftover temp files and an unused `vzundo-script`. `openReplica` is called only when a
    /// rollback is needed; nil there (no replica) is an error, as the journal cannot be applied.
    public static func recover(directory: Directory, disk: String, logger: Logger,
                               openReplica: () throws -> Replica?) throws -> Outcome {
        var log = logger
        log[metadataKey: "disk"] = .string(disk)
        guard let header = try readJournalHeader(directory: directory, disk: disk) else {
            try removeLeftovers(directory: directory, disk: disk)
            return Outcome(decision: decide(journalStartGeneration: nil, mapGeneration: nil))
        }
        log[metadataKey: "pass"] = .string(PassIdentifier.string(of: header.passID.bytes))
        let (mapGeneration, note) = try readMapGeneration(directory: directory, disk: disk)
        let decision = decide(journalStartGeneration: header.startGeneration, mapGeneration: mapGeneration)
        log.warning("unfinished pass found (\(directory.path)/\(UndoJournal.fileName(disk: disk))): \(decision.reason)\(note.isEmpty ? "" : " (\(note))")")
        switch decision.action {
        case .nothingToDo:
            return Outcome(decision: decision)
        case .discardJournal:
            try directory.remove(UndoJournal.fileName(disk: disk))
            try removeLeftovers(directory: directory, disk: disk, changed: true)
            log.info("leftover journal of a committed pass removed")
            return Outcome(decision: decision)
        case .rollBack, .rollBackAndDropMap:
            guard let replica = try openReplica() else {
                throw VZError(.targetRefused, "\(directory.path): disk \(disk) has an undo journal but no replica to roll back; move \(UndoJournal.fileName(disk: disk)) and \(mapName(disk: disk)) aside to seed the disk again")
            }
            if decision.action == .rollBackAndDropMap {
                // Before the journal goes: if this is interrupted, the next run decides the same.
                try directory.remove(mapName(disk: disk))
                try directory.sync()
            }
            var outcome = try restore(directory: directory, disk: disk, replica: replica, logger: log)
            outcome.decision = decision
            return outcome
        }
    }

    /// `recover` with a replica that is already open.
    public static func recover(directory: Directory, disk: String, replica: Replica, logger: Logger) throws -> Outcome {
        try recover(directory: directory, disk: disk, logger: logger, openReplica: { replica })
    }

    /// Unconditionally rolls the replica back with `DISK.vzundo`: every record's original is
    /// written back (data) or zeroed (zeros; a hole where the replica can), the replica is
    /// flushed, then the journal, leftover temp files and an unused script are removed and the
    /// directory is fsynced. The journal is streamed in 1 MiB reads (memory: one record, plus a
    /// bitmap of the disk's blocks). Without a journal it only removes leftovers.
    ///
    /// The records are applied in file order, and a block met twice keeps its first record (the
    /// earliest is the pre-pass original): the same result as applying them in reverse order.
    public static func restore(directory: Directory, disk: String, replica: Replica, logger: Logger) throws -> Outcome {
        var outcome = Outcome(decision: Decision(action: .rollBack, reason: "rollback requested"))
        let name = UndoJournal.fileName(disk: disk)
        guard let f = try directory.openIfExists(name, flags: O_RDONLY) else {
            try removeLeftovers(directory: directory, disk: disk)
            return outcome
        }
        let size = try f.size()
        var decoder = UndoJournalDecoder(fileName: f.path)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        var position: UInt64 = 0
        var restored: [UInt64] = []
        var checked = false
        var header: UndoJournalFormat.Header?
        while true {
            while true {
                let next = try decoder.nextRecord()
                if !checked, let h = decoder.header {
                    try check(h, disk: disk, replica: replica, fileName: f.path)
                    header = h
                    restored = [UInt64](repeating: 0, count: (Int(h.blockCount) + 63) / 64)
                    checked = true
                }
                guard let record = next, let h = header else { break }
                let index = record.extent.offset / UInt64(h.blockSize)
                let word = Int(index / 64), bit = UInt64(1) << (index % 64)
                if restored[word] & bit != 0 { outcome.duplicateRecords += 1; continue }
                switch record.kind {
                case .data:
                    try record.data.withUnsafeBytes { try replica.write(at: record.extent.offset, $0) }
                    outcome.dataRecords += 1
                case .zeros:
                    try replica.writeZeros(record.extent)
                    outcome.zeroRecords += 1
                }
                restored[word] |= bit
                outcome.restoredBytes += record.extent.length
            }
            if decoder.isEnded { break }
            if position >= size { decoder.finish(); continue }
            let n = Int(min(UInt64(chunk.count), size - position))
            try chunk.withUnsafeMutableBytes { try f.read(at: position, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
            decoder.append(chunk[0..<n])
            position += UInt64(n)
        }
        // Bytes of the file never fed to the decoder (it ended early) belong to the tail too.
        outcome.ignoredTailBytes = decoder.ignoredBytes + (size - position)
        outcome.tail = decoder.tail
        f.close()
        try replica.flush()
        // Only now, with the originals durable, may the journal go.
        try directory.remove(name)
        try removeLeftovers(directory: directory, disk: disk, changed: true)
        let tailNote = outcome.tail.map { ", ignored a torn tail of \(outcome.ignoredTailBytes) bytes (\($0))" } ?? ""
        logger.notice("rolled back \(replica.displayName): \(outcome.dataRecords) blocks of data and \(outcome.zeroRecords) zero blocks restored (\(outcome.restoredBytes) bytes)\(tailNote); journal removed")
        return outcome
    }

    private static func check(_ h: UndoJournalFormat.Header, disk: String, replica: Replica, fileName: String) throws {
        guard h.disk == disk else {
            throw VZError(.corruptJournal, "\(fileName): field 'diskName': the journal belongs to disk '\(h.disk)', not '\(disk)'")
        }
        guard h.capacity == replica.capacity else {
            throw VZError(.targetRefused, "\(fileName): the journal was written for a disk of \(h.capacity) bytes, but \(replica.displayName) has \(replica.capacity); refusing to roll back")
        }
    }

    /// Removes the temp files a crash can leave (DiskFiles.temporaries: the journal header of
    /// `UndoJournal.begin`, a seed's data file, the map, descriptor and CID of `writeAtomically`),
    /// the script when no journal is left,
    /// and fsyncs the directory. The caller holds the disk's lock, so none of them is in use.
    private static func removeLeftovers(directory: Directory, disk: String, changed: Bool = false) throws {
        let files = DiskFiles(disk: disk)
        var removed = changed
        for temp in files.temporaries where temp != files.scriptTemp {
            removed = try directory.remove(temp) || removed
        }
        removed = try RollbackScript.removeIfUnused(in: directory, disk: disk) || removed
        // Only a directory that changed needs its fsync (a clean disk costs no durable operation).
        if removed { try directory.sync() }
    }
}
