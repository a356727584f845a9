import VZCore

/// `JOB/vzdisks`: the disk set the target recorded for a job (Docs/formats.md §6). The first
/// pass of a protocol-3 source records the job's disks; later passes must bring the same set,
/// or they fail as `hardwareChanged` before anything is written. `vzrepl-target add-disk` and
/// `remove-disk` change it.
///
///     0  8  magic "VZDSKSET"
///     8  4  version (1)
///    12  4  diskCount n (1 ... 4096)
///    16     n entries: u8 nameLength (1 ... 64), name (UTF-8, a valid disk name);
///           sorted by their bytes, no two equal
///   end-4 4 CRC32C of every byte before it
public struct DiskSetFile: Equatable, Sendable {
    public static let magic: [UInt8] = Array("VZDSKSET".utf8)
    public static let version: UInt32 = 1
    /// Disks a job may have (the `diskSet` message's limit too).
    public static let maxDisks = 4096
    /// The largest file a valid record can be: header, every entry at its longest, CRC.
    public static let maxSize = 16 + maxDisks * (1 + 64) + 4

    /// Sorted, unique, valid disk names.
    public private(set) var disks: [String]

    /// `disks` in any order; they are sorted and must be unique valid disk names.
    public init(disks: [String]) throws {
        let sorted = disks.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        try DiskSetFile.check(sorted, fileName: "disk set")
        self.disks = sorted
    }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 20 + disks.count * 16)
        w.raw(DiskSetFile.magic)
        w.u32(DiskSetFile.version)
        w.u32(UInt32(disks.count))
        for d in disks {
            w.u8(UInt8(d.utf8.count))
            w.raw(d.utf8)
        }
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Every failure is `.corruptMap` (the record is bookkeeping of the replicas, like the map)
    /// and names the file, the field and the byte offset.
    public static func decode(_ bytes: [UInt8], fileName: String) throws -> DiskSetFile {
        var r = ByteReader(bytes, context: fileName, errorKind: .corruptMap)
        guard bytes.count <= maxSize else {
            throw VZError(.corruptMap, "\(fileName): \(bytes.count) bytes, more than a disk set record can have (\(maxSize))")
        }
        try r.recordHeader(magic: magic, record: "a disk set record", versions: [version])
        let n = Int(try r.u32("diskCount"))
        guard n >= 1, n <= maxDisks else { throw r.fail("diskCount", "\(n) disks, a job has 1 to \(maxDisks)") }
        // Each entry takes at least 2 bytes: a count the file cannot hold is refused before the loop.
        guard r.remaining >= 2 * n + 4 else { throw r.fail("diskCount", "\(n) disks do not fit in the \(bytes.count) bytes of the file (truncated)") }
        var names: [String] = []
        names.reserveCapacity(n)
        for i in 0..<n {
            let field = "disks[\(i)]"
            let len = Int(try r.u8("\(field).nameLength"))
            guard len >= 1, len <= 64 else { throw r.fail("\(field).nameLength", "\(len) is not a disk name length (1 to 64)") }
            guard let name = String(validating: try r.raw(len, "\(field).name"), as: UTF8.self) else {
                throw r.fail("\(field).name", "not valid UTF-8")
            }
            names.append(name)
        }
        try r.trailingCRC32C()
        try check(names, fileName: fileName)
        return try DiskSetFile(disks: names)
    }

    /// Valid names, strictly increasing (so sorted and unique).
    private static func check(_ names: [String], fileName: String) throws {
        guard !names.isEmpty, names.count <= maxDisks else {
            throw VZError(.corruptMap, "\(fileName): \(names.count) disks, a job has 1 to \(maxDisks)")
        }
        for (i, name) in names.enumerated() {
            if let why = NameRules.problem(withDisk: name) {
                throw VZError(.corruptMap, "\(fileName): field 'disks[\(i)].name': disk name \(why)")
            }
            if i > 0, !Array(names[i - 1].utf8).lexicographicallyPrecedes(Array(name.utf8)) {
                throw VZError(.corruptMap, "\(fileName): field 'disks[\(i)].name': '\(name)' is not after '\(names[i - 1])' (the names must be sorted and unique)")
            }
        }
    }
}
