import VZCore

/// The `.vzmap` file beside each replica (Docs/formats.md): the per-block hashes that drive the
/// next differential pass. Little-endian, field by field:
///
///     header (64 bytes)  magic "VZREPMAP", version u32 = 1, blockSize u32, capacity u64,
///                        generation u64, entryCount u64, entrySize u32 = 33, flags u32 = 0,
///                        createdUnixSeconds u64, reserved u32 = 0, headerCRC32C u32 (bytes 0..<60)
///     entries            entryCount x (kind u8, sha256 [32])
///     trailer (8 bytes)  entriesCRC32C u32, magic "VZME"
public enum VzmapFile {
    public static let magic: [UInt8] = Array("VZREPMAP".utf8)
    public static let trailerMagic: [UInt8] = Array("VZME".utf8)
    public static let version: UInt32 = 1
    public static let headerSize = 64
    public static let trailerSize = 8

    public struct Header: Equatable, Sendable {
        public var blockSize: UInt32
        public var capacity: UInt64
        public var generation: UInt64
        public var entryCount: UInt64
        public var createdUnixSeconds: UInt64
    }

    public static func fileSize(entryCount: UInt64) -> UInt64 {
        UInt64(headerSize) + entryCount * UInt64(BlockMap.Entry.encodedSize) + UInt64(trailerSize)
    }

    public static func encode(_ map: BlockMap, generation: UInt64, createdUnixSeconds: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: Int(fileSize(entryCount: UInt64(map.count))))
        w.raw(magic)
        w.u32(version); w.u32(map.blockSize); w.u64(map.capacity); w.u64(generation)
        w.u64(UInt64(map.count)); w.u32(UInt32(BlockMap.Entry.encodedSize)); w.u32(0)
        w.u64(createdUnixSeconds); w.u32(0)
        w.u32(CRC32C.checksum(w.bytes[0..<60]))
        for i in 0..<map.count { map[i].encode(into: &w) }
        let entriesCRC = CRC32C.checksum(w.bytes[headerSize...])
        w.u32(entriesCRC)
        w.raw(trailerMagic)
        return w.bytes
    }

    /// Reads only the header (for `status`), checking its own checksum.
    public static func decodeHeader(_ bytes: [UInt8], fileName: String) throws -> Header {
        var r = ByteReader(bytes.prefix(headerSize), context: fileName, errorKind: .corruptMap)
        try r.recordHeader(magic: magic, record: "a .vzmap file", versions: [version])
        let blockSize = try r.u32("blockSize")
        if let why = BlockSize.problem(with: blockSize) { throw r.fail("blockSize", why) }
        let capacity = try r.u64("capacity")
        let generation = try r.u64("generation")
        let entryCount = try r.u64("entryCount")
        guard entryCount == BlockMap.blockCount(capacity: capacity, blockSize: blockSize) else {
            throw r.fail("entryCount", "\(entryCount) entries do not cover a capacity of \(capacity) bytes at \(blockSize)-byte blocks")
        }
        let entrySize = try r.u32("entrySize")
        guard entrySize == UInt32(BlockMap.Entry.encodedSize) else { throw r.fail("entrySize", "\(entrySize), expected 33") }
        let flags = try r.u32("flags")
        guard flags == 0 else { throw r.fail("flags", "unknown flags 0x\(String(flags, radix: 16))") }
        let created = try r.u64("createdUnixSeconds")
        _ = try r.u32("reserved")
        let crc = try r.u32("headerCRC32C")
        let actual = CRC32C.checksum(bytes[0..<60])
        guard crc == actual else { throw r.fail("headerCRC32C", "checksum mismatch (stored \(hex(crc)), computed \(hex(actual)))") }
        return Header(blockSize: blockSize, capacity: capacity, generation: generation, entryCount: entryCount,
                      createdUnixSeconds: created)
    }

    /// Decodes and checks a whole map. Every failure is a `.corruptMap` error naming the file,
    /// the field and the byte offset.
    public static func decode(_ bytes: [UInt8], fileName: String) throws -> (Header, BlockMap) {
        let header = try decodeHeader(bytes, fileName: fileName)
        let expected = fileSize(entryCount: header.entryCount)
        guard UInt64(bytes.count) == expected else {
            throw VZError(.corruptMap, "\(fileName): \(bytes.count) bytes, expected \(expected) for \(header.entryCount) entries (truncated or padded)")
        }
        let entriesEnd = bytes.count - trailerSize
        // Readers over the whole file (skipping what is already checked), so that every error
        // names the byte offset in the file, not in a slice of it.
        var t = ByteReader(bytes, context: fileName, errorKind: .corruptMap)
        _ = try t.raw(entriesEnd, "entries")
        let storedCRC = try t.u32("entriesCRC32C")
        let tm = Array(try t.raw(4, "trailerMagic"))
        guard tm == trailerMagic else { throw t.fail("trailerMagic", "expected \"VZME\"") }
        let actual = CRC32C.checksum(bytes[headerSize..<entriesEnd])
        guard storedCRC == actual else {
            throw VZError(.corruptMap, "\(fileName): field 'entriesCRC32C' at byte \(entriesEnd): checksum mismatch (stored \(hex(storedCRC)), computed \(hex(actual)))")
        }
        var map = BlockMap(blockSize: header.blockSize, capacity: header.capacity)
        var r = ByteReader(bytes[..<entriesEnd], context: fileName, errorKind: .corruptMap)
        _ = try r.raw(headerSize, "header")
        for i in 0..<map.count { map[i] = try BlockMap.Entry.decode(&r, field: "entries[\(i)]") }
        return (header, map)
    }

    private static func hex(_ v: UInt32) -> String { "0x" + String(v, radix: 16) }
}
