import Foundation
import Glibc
import Logging
import VZCore
import VZFormats
import VZPlatform

/// The working files of one disk beside its replica: `DISK.vzmap` (load with fallback, write
/// atomically) and, through the journal, `DISK.vzundo`.
enum MapStore {
    struct Loaded {
        var map: BlockMap
        var state: Message.DiskState
    }

    static func mapName(_ disk: String) -> String { "\(disk).vzmap" }

    /// The map beside `replica`, or — when it is missing, corrupt, or of another geometry — a map
    /// rebuilt by hashing the replica itself. A map that fails its checks is never trusted.
    static func load(directory: Directory, disk: String, replica: FlatReplica, blockSize: UInt32,
                     workers: Int, logger: Logger) throws -> Loaded {
        let name = mapName(disk)
        let path = "\(directory.path)/\(name)"
        let entries = BlockMap.blockCount(capacity: replica.capacity, blockSize: blockSize)
        var note: String
        var generation: UInt64 = 0
        do {
            // Bounded read: a map for this geometry has exactly this size; anything larger is corrupt.
            let limit = Int(VzmapFile.fileSize(entryCount: entries)) + 1
            if let bytes = try directory.readFile(name, maxSize: limit) {
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
        } catch let e as VZError {
            note = e.message
        }
        logger.warning("map not trusted: \(note); rebuilding it by hashing the replica")
        let map = try ReplicaHasher.hash(replica, blockSize: blockSize, workers: workers)
        return Loaded(map: map, state: .init(mapStatus: .rebuilt, generation: generation, entryCount: UInt64(map.count), note: note))
    }

    /// Durably replaces the map: this rename is the commit point of a pass.
    static func write(_ map: BlockMap, generation: UInt64, directory: Directory, disk: String) throws {
        let bytes = VzmapFile.encode(map, generation: generation, createdUnixSeconds: UInt64(Date().timeIntervalSince1970))
        try directory.writeAtomically(mapName(disk), bytes)
    }

    static func beginJournal(directory: Directory, disk: String, job: String, rootPath: String, executablePath: String,
                             generation: UInt64, blockSize: UInt32, capacity: UInt64, logger: Logger) throws -> UndoJournal {
        var log = logger
        log[metadataKey: "subsystem"] = "journal"
        return try UndoJournal.begin(directory: directory, job: job, disk: disk, blockSize: blockSize, capacity: capacity,
                                     generation: generation,
                                     script: RollbackScript(executablePath: executablePath, rootPath: rootPath), logger: log)
    }
}
