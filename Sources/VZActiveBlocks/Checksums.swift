import VZCore

/// The checksums the on-disk structures ABM reads carry, in pure Swift.
enum Checksums {
    private static let crc32Table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
        return c
    }

    private static let crc16Table: [UInt16] = (0..<256).map { i -> UInt16 in
        var c = UInt16(i)
        for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0xA001 : c >> 1 }
        return c
    }

    /// zlib's CRC-32 (reflected 0xEDB88320, pre- and post-inverted): GPT headers and entry arrays.
    static func crc32<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var c: UInt32 = 0xFFFF_FFFF
        crc32Table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    /// The same CRC-32 with neither inversion, from `seed` (LVM2 labels and metadata).
    static func crc32Raw(_ seed: UInt32, _ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c = seed
        crc32Table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c
    }

    /// e2fsprogs' `ext2fs_crc16` (reflected 0x8005, no inversion): ext4 gdt_csum descriptors.
    static func crc16<C: Collection>(_ seed: UInt16, _ bytes: C) -> UInt16 where C.Element == UInt8 {
        var c = seed
        crc16Table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt16(b)) & 0xFF)] ^ (c >> 8) }
        }
        return c
    }

    /// Linux `crc32c_le`: CRC-32C with neither pre- nor post-inversion (ext4 metadata_csum).
    static func crc32cRaw<C: Collection>(_ seed: UInt32, _ bytes: C) -> UInt32 where C.Element == UInt8 {
        ~CRC32C.checksum(bytes, seed: ~seed)
    }
}

/// Little-endian and big-endian field access on a byte array, bounds-checked: a read past the
/// end is a parse failure, never a trap.
struct Fields {
    let bytes: [UInt8]
    let base: Int
    let what: String

    init(_ bytes: [UInt8], at base: Int = 0, _ what: String) {
        self.bytes = bytes; self.base = base; self.what = what
    }

    private func check(_ off: Int, _ n: Int) throws {
        guard off >= 0, base + off >= 0, base + off + n <= bytes.count else {
            throw ParseFailure("\(what): field at +\(off) (\(n) bytes) is past the end of the structure")
        }
    }

    func u8(_ off: Int) throws -> UInt8 { try check(off, 1); return bytes[base + off] }
    func u16(_ off: Int) throws -> UInt16 {
        try check(off, 2); let p = base + off
        return UInt16(bytes[p]) | UInt16(bytes[p + 1]) << 8
    }
    func u32(_ off: Int) throws -> UInt32 {
        try check(off, 4); let p = base + off
        return UInt32(bytes[p]) | UInt32(bytes[p + 1]) << 8 | UInt32(bytes[p + 2]) << 16 | UInt32(bytes[p + 3]) << 24
    }
    func u64(_ off: Int) throws -> UInt64 { UInt64(try u32(off)) | UInt64(try u32(off + 4)) << 32 }
    func be16(_ off: Int) throws -> UInt16 { (try u16(off)).byteSwapped }
    func be32(_ off: Int) throws -> UInt32 { (try u32(off)).byteSwapped }
    func be64(_ off: Int) throws -> UInt64 { UInt64(try be32(off)) << 32 | UInt64(try be32(off + 4)) }
    func raw(_ off: Int, _ n: Int) throws -> ArraySlice<UInt8> { try check(off, n); return bytes[(base + off)..<(base + off + n)] }
    func matches(_ off: Int, _ text: String) -> Bool {
        let t = Array(text.utf8)
        guard off >= 0, base + off + t.count <= bytes.count else { return false }
        return bytes[(base + off)..<(base + off + t.count)].elementsEqual(t)
    }
}

/// Why a structure cannot be trusted; the volume it belongs to becomes all active.
struct ParseFailure: Error, CustomStringConvertible {
    let description: String
    init(_ reason: String) { description = reason }
}
