import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform

/// Where an `UndoJournal` appends its bytes: the open `DISK.vzundo` (a `PosixFile`). A test can
/// wrap it to simulate power loss (keep unsynced writes in memory, drop them at a "crash").
public protocol UndoJournalStorage: AnyObject {
    func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws
    /// Makes every completed write durable. A failure is final (never retried).
    func sync() throws
    func close()
}

extension PosixFile: UndoJournalStorage {}

/// The write-ahead undo journal of one pass over one disk: `DISK.vzundo` in the job directory
/// (byte layout in `UndoJournalFormat`, Docs/formats.md).
///
/// Before the apply path overwrites blocks it calls `protect` with them: for each block not yet
/// protected in this pass the journal appends one record with the block's current (pre-pass)
/// content — or, when that content is a hole or all zeros, a record with no data — and then
/// fsyncs once for the whole batch (group commit). Only then does `protect` return and the caller
/// write the replica. So every record that is durable describes a block that may have been
/// overwritten, and every block that was overwritten has a durable record; a record that was
/// written but not fsynced (the torn tail after a crash) belongs to a block that was not touched.
///
/// Each block is recorded at most once per pass (an in-memory bitmap of protected blocks), so the
/// journal holds exactly the pre-pass originals, however often the pass rewrites a block, and is
/// never larger than the pass's changed blocks. After any failure the journal refuses further
/// work: appending after a failed write or fsync could place valid records behind a torn one,
/// where recovery would never see them.
///
/// Not for concurrent use from several threads without the caller's ordering; calls are
/// serialised by an internal lock, so at worst they run one after another.
public final class UndoJournal: PassJournal {
    public struct Stats: Equatable, Sendable {
        /// Size of the journal file: header and records.
        public var bytesWritten: UInt64 = 0
        public var dataRecords: UInt64 = 0
        /// Records of blocks that were holes or all zeros (no data stored).
        public var zeroRecords: UInt64 = 0
        /// Bytes of the disk protected (sum of the records' extents).
        public var protectedBytes: UInt64 = 0
        /// fsyncs of the journal by `protect` (one per batch that added records).
        public var syncs: UInt64 = 0
    }

    public let header: UndoJournalFormat.Header
    /// `DISK.vzundo`.
    public let fileName: String
    public let directory: Directory

    private let storage: UndoJournalStorage
    private let logger: Logger
    private var protected: [UInt64]
    private var record: [UInt8]
    private var failure: VZError?
    private var discarded = false
    private var closed = false
    private var statsValue = Stats()
    private var mutex = pthread_mutex_t()

    /// The journal file's name for `disk`.
    public static func fileName(disk: String) -> String { DiskFiles(disk: disk).journal }
    /// The header is written here first, then renamed to `fileName`, so a `.vzundo` always has a
    /// whole header. A leftover one (a crash inside `begin`) is removed by recovery.
    public static func tempName(disk: String) -> String { DiskFiles(disk: disk).journalTemp }

    /// Starts the journal of a pass: writes the header to a temp file, fsyncs it, renames it to
    /// `DISK.vzundo`, installs `vzundo-script` and fsyncs the directory. Refuses when a
    /// `DISK.vzundo` exists already: an earlier pass was not recovered.
    ///
    /// - Parameters:
    ///   - generation: the `.vzmap` generation the pass starts from; the commit writes a greater one.
    ///   - storageLayer: a test seam wrapping the open journal file (power-loss simulation).
    public static func begin(directory: Directory, job: String, disk: String,
                             passID: UndoJournalFormat.PassID = .random(),
                             blockSize: UInt32, capacity: UInt64, generation: UInt64,
                             script: RollbackScript, logger: Logger,
                             storageLayer: (UndoJournalStorage) -> UndoJournalStorage = { $0 }) throws -> UndoJournal {
        for (what, name) in [("job", job), ("disk", disk)] {
            if let why = NameRules.problem(with: name) { throw VZError(.badArgument, "undo journal: \(what) name \(why)") }
        }
        if let why = BlockSize.problem(with: blockSize) {
            throw VZError(.badArgument, "undo journal for \(disk): block size \(why)")
        }
        guard capacity > 0, capacity <= UInt64(1) << 62 else {
            throw VZError(.badArgument, "undo journal for \(disk): capacity \(capacity) is not a disk size")
        }
        let name = fileName(disk: disk)
        guard !directory.exists(name) else {
            throw VZError(.targetRefused, "\(directory.path)/\(name) exists: an earlier pass of disk \(disk) was not recovered; run `vzrepl-target recover` (or restart the agent) before a new pass")
        }
        let header = UndoJournalFormat.Header(job: job, disk: disk, blockSize: blockSize, capacity: capacity,
                                              startGeneration: generation, passID: passID,
                                              createdUnixSeconds: UInt64(max(0, time(nil))))
        let bytes = try UndoJournalFormat.encodeHeader(header)
        let temp = tempName(disk: disk)
        let t = try directory.open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o640)
        try t.write(at: 0, bytes)
        try t.sync()
        t.close()
        try directory.rename(temp, to: name)
        let file = try directory.open(name, flags: O_WRONLY)
        // The journal exists before the script: a concurrent `discard` of another disk of this job
        // that removes the script re-checks for journals afterwards and puts it back.
        try script.install(in: directory, job: job, disk: disk)
        try directory.sync()
        var log = logger
        log[metadataKey: "disk"] = .string(disk)
        log[metadataKey: "pass"] = .string(PassIdentifier.string(of: passID.bytes))
        log.info("undo journal started: \(directory.path)/\(name), map generation \(generation), \(blockSize)-byte blocks")
        return UndoJournal(header: header, directory: directory, fileName: name, storage: storageLayer(file),
                           headerBytes: UInt64(bytes.count), logger: log)
    }

    private init(header: UndoJournalFormat.Header, directory: Directory, fileName: String,
                 storage: UndoJournalStorage, headerBytes: UInt64, logger: Logger) {
        self.header = header
        self.directory = directory
        self.fileName = fileName
        self.storage = storage
        self.logger = logger
        let blocks = Int(header.blockCount)
        protected = [UInt64](repeating: 0, count: (blocks + 63) / 64)
        record = [UInt8](repeating: 0, count: UndoJournalFormat.recordHeaderSize + Int(header.blockSize))
        statsValue.bytesWritten = headerBytes
        pthread_mutex_init(&mutex, nil)
    }

    deinit {
        if !closed { storage.close() }
        pthread_mutex_destroy(&mutex)
    }

    public var stats: Stats {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        return statsValue
    }

    public var path: String { "\(directory.path)/\(fileName)" }

    /// True when `protect` has recorded the block with this index in this pass.
    public func isProtected(block index: UInt64) -> Bool {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        return protected[Int(index / 64)] & (1 << (index % 64)) != 0
    }

    /// Makes the pre-pass content of every block touched by `extents` durable, then returns: the
    /// caller may then overwrite those blocks. Extents are widened to whole blocks; blocks
    /// already protected in this pass are skipped. One fsync for the whole batch.
    public func protect(_ extents: [Extent], replica: Replica) throws {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        if let f = failure {
            throw VZError(f.kind, "\(path): the journal failed earlier and takes no more records (\(f.message))")
        }
        guard !discarded, !closed else { throw VZError(.internal, "\(path): protect after the journal was closed") }
        do {
            var added = false
            let bs = UInt64(header.blockSize)
            for e in extents where !e.isEmpty {
                guard e.end <= header.capacity, e.end > e.offset else {
                    throw VZError(.internal, "\(path): extent \(e) is outside the disk's \(header.capacity) bytes")
                }
                for index in (e.offset / bs)...((e.end - 1) / bs) {
                    let word = Int(index / 64), bit = UInt64(1) << (index % 64)
                    if protected[word] & bit != 0 { continue }
                    try append(block: index, replica: replica)
                    protected[word] |= bit
                    added = true
                }
            }
            if added {
                try storage.sync()
                statsValue.syncs += 1
            }
        } catch {
            let e = error as? VZError ?? VZError(.internal, "\(error)")
            failure = e
            logger.failure("undo journal failed, the pass cannot go on", e)
            throw e
        }
    }

    /// Appends the record of one block (not yet durable).
    private func append(block index: UInt64, replica: Replica) throws {
        let extent = header.blockExtent(index)
        let h = UndoJournalFormat.recordHeaderSize
        let sequence = statsValue.dataRecords + statsValue.zeroRecords
        let offset = statsValue.bytesWritten
        let size = try record.withUnsafeMutableBytes { buf -> Int in
            var kind = UndoJournalFormat.RecordKind.zeros
            if try !replica.isHole(extent) {
                let data = UnsafeMutableRawBufferPointer(rebasing: buf[h..<h + Int(extent.length)])
                try replica.read(at: extent.offset, into: data)
                if !ZeroDetector.isZero(UnsafeRawBufferPointer(data)) { kind = .data }
            }
            UndoJournalFormat.sealRecord(buf, kind: kind, passID: header.passID, sequence: sequence, extent: extent)
            let size = h + (kind == .data ? Int(extent.length) : 0)
            try storage.write(at: offset, UnsafeRawBufferPointer(rebasing: buf[0..<size]))
            if kind == .data { statsValue.dataRecords += 1 } else { statsValue.zeroRecords += 1 }
            return size
        }
        statsValue.bytesWritten += UInt64(size)
        statsValue.protectedBytes += extent.length
    }

    /// Called after the new `.vzmap` is durable (the commit point): removes `DISK.vzundo`, and
    /// `vzundo-script` when no other disk of the job has a journal, then fsyncs the directory.
    /// Idempotent.
    public func discard() throws {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        if discarded { return }
        if !closed { storage.close(); closed = true }
        try directory.remove(fileName)
        try RollbackScript.removeIfUnused(in: directory, disk: header.disk)
        try directory.sync()
        discarded = true
        logger.info("undo journal removed after commit: \(statsValue.dataRecords) data and \(statsValue.zeroRecords) zero records, \(statsValue.bytesWritten) bytes")
    }

    /// Closes the file and leaves it in place: the pass failed and `Rollback.recover` will undo it.
    public func close() {
        pthread_mutex_lock(&mutex); defer { pthread_mutex_unlock(&mutex) }
        if !closed { storage.close(); closed = true }
    }
}

/// `vzundo-script`: the shell script beside the replicas of a job while a pass of one of its
/// disks is unfinished. It runs `EXE rollback --root ROOT --job JOB --disk DISK` for every
/// `DISK.vzundo` in its directory, so a field engineer can roll back by hand. Its content depends
/// only on the job (not on the disk), so passes of several disks of one job can each install it.
public struct RollbackScript: Sendable, Equatable {
    public static let fileName = "vzundo-script"
    public static let maxSize = 64 * 1024

    /// The `vzrepl-target` binary the script runs (absolute path).
    public var executablePath: String
    /// The datastore root the agent serves (`--root`).
    public var rootPath: String

    public init(executablePath: String, rootPath: String) {
        self.executablePath = executablePath
        self.rootPath = rootPath
    }

    public func text(job: String) -> String {
        let exe = Self.quoted(executablePath), root = Self.quoted(rootPath), j = Self.quoted(job)
        return """
            #!/bin/sh
            # vzundo-script: written by vzrepl-target when a pass of job \(job) started; removed when
            # no pass of the job is unfinished. Every DISK.vzundo beside this script holds the pre-pass
            # original of each block an unfinished pass changed. This script puts each such disk back
            # to its last committed pass (or, if the pass had committed, only removes the leftover
            # journal) - what vzrepl-target does by itself when it next starts. Safe to run again
            # after an interruption. Stop any session of this job first.
            set -eu
            cd "$(dirname "$0")"
            status=0
            for journal in *.vzundo; do
                [ -f "$journal" ] || continue
                disk=${journal%.vzundo}
                echo "vzundo-script: job \(job): rolling back disk $disk"
                \(exe) rollback --root \(root) --job \(j) --disk "$disk" || status=1
            done
            exit $status

            """
    }

    /// Single-quoted for sh.
    static func quoted(_ s: String) -> String {
        var out = "'"
        for c in s { if c == "'" { out += "'\\''" } else { out.append(c) } }
        return out + "'"
    }

    /// Writes the script atomically (per-disk temp name, so passes of two disks of one job do not
    /// collide), mode 0755. The caller fsyncs the directory.
    func install(in directory: Directory, job: String, disk: String) throws {
        try Self.write(Array(text(job: job).utf8), in: directory, disk: disk)
    }

    static func write(_ bytes: [UInt8], in directory: Directory, disk: String) throws {
        let temp = DiskFiles(disk: disk).scriptTemp
        let f = try directory.open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o755)
        let (r, e) = Syscall.retrying { fchmod(f.fd, 0o755) }
        guard r == 0 else { throw Syscall.error("fchmod 0755", f.path, e, kind: .replicaIO) }
        try f.write(at: 0, bytes)
        try f.sync()
        f.close()
        try directory.rename(temp, to: fileName)
    }

    /// True for `DISK.vzundo` (not the temp files, which start with a dot).
    static func isJournal(_ name: String) -> Bool { name.hasSuffix(".vzundo") && !name.hasPrefix(".") }

    /// Removes the script when no `.vzundo` is left in the directory (and the temp file `disk`
    /// may have left). If a pass of another disk began meanwhile (it creates its journal, then
    /// installs the script), puts the script back. The caller fsyncs the directory.
    /// Returns whether anything was removed.
    @discardableResult
    static func removeIfUnused(in directory: Directory, disk: String) throws -> Bool {
        let removedTemp = try directory.remove(DiskFiles(disk: disk).scriptTemp)
        guard !(try directory.entries().contains(where: isJournal)) else { return removedTemp }
        guard let bytes = try directory.readFile(fileName, maxSize: maxSize) else { return removedTemp }
        try directory.remove(fileName)
        if try directory.entries().contains(where: isJournal) {
            try write(bytes, in: directory, disk: disk)
        }
        return true
    }
}
