import Foundation
import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform

/// The working files of one disk beside its replica: `DISK.vzmap` (load with fallback, write
/// atomically, its header read for recovery and status) and, through the journal, `DISK.vzundo`.
enum MapStore {
    struct Loaded {
        var map: BlockMap
        var state: Message.DiskState
    }

    /// The map beside `replica`, or — when it is missing, corrupt, or of another geometry — a map
    /// rebuilt by hashing the replica itself. A map that fails its checks is never trusted.
    /// With `distrust` (the replica was written out of band), the map is not read at all: the
    /// replica is hashed and the status is `replicaModified`.
    static func load(directory: Directory, files: DiskFiles, replica: some Replica, blockSize: UInt32,
                     workers: Int, distrust: String? = nil, logger: Logger,
                     onHashed: ((UInt64) -> Void)? = nil) throws -> Loaded {
        // Rebuilding reports the bytes hashed so far (the source shows it as the map step).
        let bs = UInt64(blockSize)
        let capacity = replica.capacity
        let progress: ((Int, BlockMap.Entry) throws -> Void)? = onHashed.map { report in
            { index, _ in report(Swift.min(UInt64(index + 1) * bs, capacity)) }
        }
        let path = "\(directory.path)/\(files.map)"
        if let why = distrust {
            let generation = (try? readHeader(directory: directory, files: files))?.header?.generation ?? 0
            logger.warning("replica modified out of band: \(why); not trusting its map, hashing the replica")
            let map = try ReplicaHasher.hash(replica, blockSize: blockSize, workers: workers, onBlock: progress)
            return Loaded(map: map, state: .init(mapStatus: .replicaModified, generation: generation,
                                                 entryCount: UInt64(map.count), note: why))
        }
        let entries = BlockMap.blockCount(capacity: replica.capacity, blockSize: blockSize)
        var note: String
        var generation: UInt64 = 0
        do {
            // Bounded read: a map for this geometry has exactly this size; anything larger is corrupt.
            let limit = Int(VzmapFile.fileSize(entryCount: entries)) + 1
            if let f = try directory.openIfExists(files.map, flags: O_RDONLY) {
                // Larger than any map of this geometry: corrupt (never read), not an I/O failure.
                let size = try f.size()
                guard size < UInt64(limit) else {
                    throw VZError(.corruptMap, "\(path): \(size) bytes, more than the \(limit - 1) a map of this geometry has")
                }
                var bytes = [UInt8](repeating: 0, count: Int(size))
                try bytes.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
                if let header = try? VzmapFile.decodeHeader(bytes, fileName: path) { generation = header.generation }
                let (header, map) = try VzmapFile.decode(bytes, fileName: path)
                if header.blockSize != blockSize {
                    note = "\(path) was written for \(header.blockSize)-byte blocks, the job now uses \(blockSize)"
                } else if header.capacity != replica.capacity {
                    note = "\(path) describes \(header.capacity) bytes, the replica has \(replica.capacity)"
                } else {
                    return Loaded(map: map, state: .init(mapStatus: .valid, generation: header.generation, entryCount: UInt64(map.count)))
                }
            } else {
                note = "\(path) is missing"
            }
        } catch let e as VZError where e.kind == .corruptMap {
            note = e.message
        }
        logger.warning("map not trusted: \(note); rebuilding it by hashing the replica")
        let map = try ReplicaHasher.hash(replica, blockSize: blockSize, workers: workers, onBlock: progress)
        return Loaded(map: map, state: .init(mapStatus: .rebuilt, generation: generation, entryCount: UInt64(map.count), note: note))
    }

    /// The map's header, or nil with why when the map is missing or its header fails its checks.
    /// Reads only the 64-byte header. An I/O error is thrown, not taken for "missing": rolling
    /// back a committed pass because its map could not be read would leave a map that does not
    /// describe the replica.
    static func readHeader(directory: Directory, files: DiskFiles) throws -> (header: VzmapFile.Header?, note: String) {
        guard let f = try directory.openIfExists(files.map, flags: O_RDONLY) else {
            return (nil, "\(directory.path)/\(files.map) is missing")
        }
        let n = Int(min(try f.size(), UInt64(VzmapFile.headerSize)))
        var bytes = [UInt8](repeating: 0, count: n)
        try bytes.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
        do {
            return (try VzmapFile.decodeHeader(bytes, fileName: f.path), "")
        } catch let e as VZError where e.kind == .corruptMap {
            return (nil, e.message)
        }
    }

    /// Durably replaces the map: this rename is the commit point of a pass.
    static func write(_ map: BlockMap, generation: UInt64, directory: Directory, files: DiskFiles) throws {
        let bytes = VzmapFile.encode(map, generation: generation, createdUnixSeconds: UInt64(Date().timeIntervalSince1970))
        try directory.writeAtomically(files.map, bytes)
    }

    static func beginJournal(directory: Directory, files: DiskFiles, job: String, rootPath: String, executablePath: String,
                             generation: UInt64, blockSize: UInt32, capacity: UInt64, passId: [UInt8]? = nil,
                             logger: Logger) throws -> UndoJournal {
        var log = logger
        log[metadataKey: "subsystem"] = "journal"
        return try UndoJournal.begin(directory: directory, job: job, disk: files.disk, passID: passId.map { .init(bytes: $0) } ?? .random(),
                                     blockSize: blockSize, capacity: capacity, generation: generation,
                                     script: RollbackScript(executablePath: executablePath, rootPath: rootPath), logger: log)
    }
}
