import Foundation
import Glibc
import VZCore
import VZFormats
import VZPlatform

/// The read-only commands of the target: `status` (what the datastore holds) and `verify`
/// (re-hash a replica against its map).
public enum ReplicaInspector {
    public struct DiskStatus: Codable, Sendable {
        public var job: String
        public var disk: String
        public var capacityBytes: UInt64?
        public var blockSize: UInt32?
        public var generation: UInt64?
        public var lastCommit: String?
        public var cid: String?
        public var mapState: String
        public var pendingUndo: Bool
    }

    public static func status(rootPath: String) throws -> [DiskStatus] {
        let root = try Directory.openRoot(rootPath)
        var out: [DiskStatus] = []
        for job in try root.entries() where NameRules.problem(with: job) == nil {
            guard let dir = try? root.subdirectory(job, create: false) else { continue }
            for name in try dir.entries() where name.hasSuffix("-flat.vmdk") {
                let disk = String(name.dropLast("-flat.vmdk".count))
                var s = DiskStatus(job: job, disk: disk, mapState: "missing", pendingUndo: dir.exists("\(disk).vzundo"))
                if let replica = try FlatReplicaStore(directory: dir).open(DiskFiles(disk: disk), expectedCapacity: nil) {
                    s.capacityBytes = replica.capacity
                    if let d = try? replica.readDescriptor() { s.cid = d.cidHex }
                }
                let mapName = "\(disk).vzmap"
                if let f = try dir.openIfExists(mapName, flags: O_RDONLY) {
                    var header = [UInt8](repeating: 0, count: VzmapFile.headerSize)
                    do {
                        try header.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
                        let h = try VzmapFile.decodeHeader(header, fileName: f.path)
                        s.blockSize = h.blockSize
                        s.generation = h.generation
                        s.lastCommit = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(h.createdUnixSeconds)))
                        s.mapState = "ok"
                    } catch {
                        s.mapState = "corrupt"
                    }
                }
                out.append(s)
            }
        }
        return out
    }

    public struct Mismatch: Error, CustomStringConvertible {
        public var block: Int
        public var offset: UInt64
        public var expected: BlockMap.Entry
        public var actual: BlockMap.Entry
        public var description: String {
            "block \(block) (offset \(offset)): map says \(describe(expected)), replica has \(describe(actual))"
        }
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
