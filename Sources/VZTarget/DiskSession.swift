import Foundation
import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform
import VZWire

/// One disk's pass on the target: open or create the replica, report the map, apply the blocks
/// the source sends (decompressed and verified on worker threads, written in order, each batch's
/// originals protected by the journal first), then commit: flush the replica, write the new
/// `.vzmap` atomically (its rename is the commit point), record a new CID, drop the journal.
/// Which frames may come and go when is the session's (`TargetSessionStateMachine`, which also
/// checks every block against the disk's geometry): this feeds it and does what it says.
final class DiskSession {
    struct Options {
        var workers = 2
        /// Blocks decoded ahead of the writer; bounds memory at about depth x blockSize x 2.
        var depth = 8
        /// How many bytes of blocks one journal group commit covers.
        var batchBytes = 16 << 20
        /// Test-only: apply without the undo journal (the benchmark's reference run).
        var journaled = true
        var executablePath = CommandLine.arguments.first ?? "vzrepl-target"
        var rootPath = ""
        /// How long to wait for another session's lock on the disk before refusing.
        var lockWait = 5.0
        /// The most memory a disk's block map may take (33 bytes a block, held whole during a pass).
        var mapMemoryLimit = TargetServer.Options.defaultMapMemoryLimit
        /// The source's pass id (hello, protocol 3), which the undo journal records as its own;
        /// nil: the journal gets a random one.
        var passId: [UInt8]?
    }

    enum Incoming {
        case block(Message.BlockData)
        case zero(Extent)
    }

    typealias Decoded = DecodedChange

    let jobDirectory: Directory
    let store: FlatReplicaStore
    let files: DiskFiles
    let job: String
    let request: Message.OpenDisk
    let channel: MessageChannel
    /// The session's state, handed back to `TargetServer` after `run`. The receive thread of
    /// `apply` feeds it; nothing else touches it meanwhile.
    private(set) var session: TargetSessionStateMachine
    let options: Options
    var logger: Logger

    init(jobDirectory: Directory, job: String, request: Message.OpenDisk, channel: MessageChannel,
         session: TargetSessionStateMachine, options: Options, logger: Logger) {
        self.jobDirectory = jobDirectory
        self.store = FlatReplicaStore(directory: jobDirectory)
        self.files = DiskFiles(disk: request.disk)
        self.job = job
        self.request = request
        self.channel = channel
        self.session = session
        self.options = options
        self.logger = logger
        self.logger[metadataKey: "disk"] = "\(request.disk)"
    }

    /// The session accepted the request's geometry (block size, capacity) before this runs.
    func run() throws {
        let disk = request.disk
        if let why = NameRules.problem(withDisk: disk) { throw VZError(.pathOutsideRoot, "disk name \(why)") }
        let bs = request.blockSize
        try DiskSession.checkMapMemory(request, limit: options.mapMemoryLimit)

        // Rebuilding a map, journaling, flushing gigabytes at the commit: none of it may look like
        // a dead target to the source's idle timeout, nor like a stuck one to its progress
        // timeout: the beats report this process's disk I/O as progress.
        // A version-3 source also hears which step it is (a lock wait, a map rebuilt by hashing).
        try channel.withHeartbeat(counting: DiskActivity.counter) { heartbeat in
            try pass(disk: disk, blockSize: bs, heartbeat: heartbeat)
        }
    }

    /// Before any file exists and before the map is allocated: the map is sized by the peer's claim.
    static func checkMapMemory(_ request: Message.OpenDisk, limit: UInt64) throws {
        let bs = request.blockSize
        let blocks = BlockMap.blockCount(capacity: request.capacity, blockSize: bs)
        let mapBytes = blocks.multipliedReportingOverflow(by: UInt64(BlockMap.Entry.encodedSize))
        guard !mapBytes.overflow, mapBytes.partialValue <= limit else {
            throw VZError(.targetRefused, "disk '\(request.disk)': a \(request.capacity)-byte disk at \(bs)-byte blocks has \(blocks) blocks, whose map would take \(mapBytes.overflow ? "more than 2^64" : "\(mapBytes.partialValue)") bytes of memory, more than this agent's limit of \(limit) (`serve --map-memory-limit`); use a larger blockSize in the job, or raise the limit")
        }
    }

    static func unixMillis() -> UInt64 { UInt64(max(0, Date().timeIntervalSince1970 * 1000)) }

    private func pass(disk: String, blockSize bs: UInt32, heartbeat: Heartbeat) throws {
        let started = DiskSession.unixMillis()
        heartbeat.step = WorkStep(.waitingForLock)
        let lock = try DiskLock.acquire(directory: jobDirectory, files: files, wait: options.lockWait)
        defer { lock.release() }
        heartbeat.step = WorkStep(.recover)
        // Only this disk: other disks are recovered at boot or by their own sessions, so a large
        // journal elsewhere never delays this session's answer.
        let recovered = try DatastoreRecovery.recoverLocked(store: store, job: job, files: files, logger: logger)
        if recovered.action != .nothingToDo { logger.notice("recovered an unfinished pass first: \(recovered.action) (\(recovered.reason))") }
        let entries = BlockMap.blockCount(capacity: request.capacity, blockSize: bs)
        try SpaceCheck.preflight(directory: jobDirectory, disk: disk, blockSize: bs, entries: Int(entries))
        heartbeat.step = WorkStep(.map, total: request.capacity)
        let (replica, loaded) = try openReplicaAndMap(heartbeat)
        logger.info("disk opened: \(replica.displayName), \(request.capacity) bytes, map \(loaded.state.mapStatus) generation \(loaded.state.generation)\(loaded.state.note.isEmpty ? "" : " (\(loaded.state.note))")")
        try sendMap(loaded)
        heartbeat.step = WorkStep(.apply)

        var journal: PassJournal = NoJournal()
        let generation = loaded.state.generation + 1
        let stats: (changed: UInt64, zero: UInt64, scanned: UInt64)
        do {
            // Inside the do: a journal that fails half-way through its own start is cleaned up too.
            if options.journaled {
                journal = try MapStore.beginJournal(directory: jobDirectory, files: files, job: job, rootPath: options.rootPath,
                                                    executablePath: options.executablePath, generation: loaded.state.generation,
                                                    blockSize: bs, capacity: request.capacity, passId: options.passId, logger: logger)
            }
            var newMap = loaded.map
            let (applied, chain) = try apply(to: replica, journal: journal, map: &newMap)
            stats = applied
            heartbeat.step = WorkStep(.commit)
            // Commit: the replica first, then the map that describes it, then the CID, then the journal.
            try replica.flush()
            try MapStore.write(newMap, generation: generation, directory: jobDirectory, files: files)
            try store.recordCID(FlatDescriptor.randomCID(), generation: generation, chain: chain, of: replica)
            // For `status`: after the commit point, before the journal goes (Docs/formats.md §7).
            let record = PassRecordFile(generation: generation, committedUnixMillis: DiskSession.unixMillis(), startedUnixMillis: started,
                                        scannedBytes: stats.scanned, changedBytes: stats.changed, zeroBytes: stats.zero,
                                        passId: options.passId)
            try jobDirectory.writeAtomically(files.passRecord, record.encode())
            try journal.discard()
        } catch {
            rollBack(after: error, journal: journal)
            throw error
        }
        logger.info("pass committed", metadata: ["generation": "\(generation)", "changedBytes": "\(stats.changed)", "zeroBytes": "\(stats.zero)",
                                                 "scannedBytes": "\(stats.scanned)"])
        try send(.diskCommitted(.init(generation: generation, changedBytes: stats.changed, zeroBytes: stats.zero)))
    }

    /// A failed pass rolls back at once (Rollback decides from the files whether the commit point
    /// was passed). If even that fails, the journal stays and the next start recovers it.
    private func rollBack(after error: Error, journal: PassJournal) {
        (journal as? UndoJournal)?.close()
        guard options.journaled else { return }
        logger.failure("pass failed; rolling back", error)
        do {
            let r = try DatastoreRecovery.recoverLocked(store: store, job: job, files: files, logger: logger)
            logger.notice("after the failure: \(r.action) (\(r.reason)), \(r.restoredBytes) bytes restored")
        } catch {
            logger.failure("rollback failed; the journal stays, and `vzrepl-target recover` or the next session rolls back", error, critical: true)
        }
    }

    private func openReplicaAndMap(_ heartbeat: Heartbeat) throws -> (FlatReplica, MapStore.Loaded) {
        if let replica = try store.open(files, expectedCapacity: request.capacity) {
            let loaded = try MapStore.load(directory: jobDirectory, files: files, replica: replica,
                                           blockSize: request.blockSize, workers: options.workers,
                                           distrust: try store.outOfBandChange(of: replica), logger: logger,
                                           onHashed: { heartbeat.step = WorkStep(.map, done: $0, total: replica.capacity) })
            return (replica, loaded)
        }
        let replica = try store.create(files, capacity: request.capacity)
        let map = BlockMap(blockSize: request.blockSize, capacity: request.capacity, filledWith: .zero)
        return (replica, MapStore.Loaded(map: map, state: .init(mapStatus: .created, generation: 0, entryCount: UInt64(map.count))))
    }

    private func send(_ message: Message) throws { try channel.send(message, in: &session) }

    private func sendMap(_ loaded: MapStore.Loaded) throws {
        try send(.diskState(loaded.state))
        var first = 0
        while first < loaded.map.count {
            let n = Swift.min(Message.maxMapChunkEntries, loaded.map.count - first)
            let entries = (first..<first + n).map { loaded.map[$0] }
            try send(.mapChunk(firstIndex: UInt64(first), entries: entries))
            first += n
        }
    }

    /// Decompresses and verifies a change on a worker thread; the session checked its geometry.
    private func decode(_ item: Incoming) throws -> Decoded {
        switch item {
        case let .zero(e):
            return .zero(e)
        case let .block(b):
            let bytes: ArraySlice<UInt8>
            let context = "disk '\(request.disk)' block at offset \(b.offset)"
            switch b.encoding {
            case .raw:
                bytes = b.payload  // the frame's own bytes: no copy
            case .lz4:
                // Not zero-filled first: LZ4.decompress writes exactly rawLength bytes or throws.
                let n = Int(b.rawLength)
                bytes = try [UInt8](unsafeUninitializedCapacity: n) { out, initialized in
                    try b.payload.withUnsafeBytes { src in
                        try LZ4.decompress(src, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: out[0..<n])), context: context)
                    }
                    initialized = n
                }[...]
            }
            let hash = bytes.withUnsafeBytes { SHA256.digest($0) }
            guard hash == SHA256Digest(b.sha256) else {
                throw VZError(.hashMismatch, "\(context): SHA-256 of the received data is \(hash), the source sent \(SHA256Digest(b.sha256)); nothing of it was written")
            }
            return .block(offset: b.offset, bytes: bytes, hash: hash)
        }
    }

    /// Returns what changed and the source chain the source sent (protocol 3; nil before).
    private func apply(to replica: FlatReplica, journal: PassJournal, map: inout BlockMap)
        throws -> ((changed: UInt64, zero: UInt64, scanned: UInt64), [SourceChainLink]?) {
        var changed: UInt64 = 0, zero: UInt64 = 0
        var batch: [Decoded] = []
        var batchBytes = 0
        let bs = UInt64(request.blockSize)
        let applier = BatchApplier(replica: replica, journal: journal) { [self] extents in
            try SpaceCheck.beforeBatch(directory: jobDirectory, disk: request.disk, extents: extents, blockSize: request.blockSize)
        }

        func flushBatch() throws {
            guard !batch.isEmpty else { return }
            try applier.submit(batch)
            for item in batch {
                switch item {
                case let .block(offset, bytes, hash):
                    map[Int(offset / bs)] = .data(hash)
                    changed += UInt64(bytes.count)
                case let .zero(e):
                    for i in Int(e.offset / bs)..<Int((e.end + bs - 1) / bs) { map[i] = .zero }
                    changed += e.length
                    zero += e.length
                }
            }
            batch = []
            batchBytes = 0
        }

        let pipeline = OrderedPipeline<Incoming, Decoded>(workers: options.workers, depth: options.depth) { [self] in
            try decode($0)
        }
        var scanned: UInt64 = 0
        var chain: [SourceChainLink]?
        defer { try? applier.finish() }  // on every path: the writer thread must end
        try pipeline.run(produce: { [self] submit in
            while true {
                let action = try channel.nextAction(of: &session)
                switch action {
                case let .applyBlock(b): try submit(.block(b))
                case let .applyZero(e): try submit(.zero(e))
                case let .recordChain(links):
                    if let why = CIDRecordFile.problem(with: links) {
                        throw VZError(.protocolViolation, "source: diskChain of disk '\(request.disk)': \(why)")
                    }
                    chain = links
                case let .commit(s): scanned = s; return
                default: throw TargetSessionStateMachine.unexpected(action)
                }
            }
        }, consume: { item in
            batch.append(item)
            if case let .block(_, bytes, _) = item { batchBytes += bytes.count } else { batchBytes += Int(bs) }
            if batchBytes >= options.batchBytes { try flushBatch() }
        }, interruptProducer: { [channel] in
            // A block failed its check while the producer waits for the next frame: report now.
            channel.interruptReceive()
        })
        try flushBatch()
        try applier.finish()
        logger.debug("source scanned \(scanned) bytes")
        return ((changed, zero, scanned), chain)
    }
}
