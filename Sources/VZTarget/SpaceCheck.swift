import VZCore
import VZFormats
import VZPlatform

/// The datastore must hold a pass's journal and its new data as it grows. The whole changed size
/// of a differential pass is known only once the source has hashed the disk, so the check runs
/// before the pass (room for the map and a reserve) and before every batch (room for the batch's
/// journal records and data, and the reserve), each time before the replica is touched.
enum SpaceCheck {
    /// Left free for the map rewrite, the descriptor and the file system itself.
    static let reserve: UInt64 = 16 << 20

    static func preflight(directory: Directory, disk: String, blockSize: UInt32, entries: Int) throws {
        let need = VzmapFile.fileSize(entryCount: UInt64(entries)) + reserve
        try require(need, in: directory, what: "the pass of disk '\(disk)' (map rewrite and reserve)")
    }

    /// Before a batch: at worst the journal grows by the batch's bytes plus a record header per
    /// block, and the replica by the batch's bytes (zero extents free space, but count them).
    static func beforeBatch(directory: Directory, disk: String, extents: [Extent], blockSize: UInt32) throws {
        let bytes = extents.reduce(UInt64(0)) { $0 + $1.length }
        let blocks = extents.reduce(UInt64(0)) { $0 + ($1.length + UInt64(blockSize) - 1) / UInt64(blockSize) }
        let need = 2 * bytes + blocks * UInt64(UndoJournalFormat.recordHeaderSize) + reserve
        try require(need, in: directory, what: "the next \(blocks) blocks of disk '\(disk)'")
    }

    private static func require(_ need: UInt64, in directory: Directory, what: String) throws {
        let free = try directory.freeBytes()
        guard free >= need else {
            throw VZError(.noSpace, "\(directory.path): \(mib(free)) free, \(what) needs \(mib(need)); free space on the datastore (the pass is rolled back, the replica stays at its last committed state)")
        }
    }

    private static func mib(_ b: UInt64) -> String { "\((b + (1 << 20) - 1) >> 20) MiB" }
}
