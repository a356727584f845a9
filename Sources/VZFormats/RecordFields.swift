import VZCore

/// The fields vzrepl's own files share (Docs/formats.md): the magic and version they start with,
/// and the CRC32C that ends most of them. One wording for their refusals, whatever the file.
extension ByteReader {
    /// Reads the magic and the version; refuses another magic, saying the file is not `record`
    /// (e.g. "a .vzpass file"), and a version not in `versions`. Returns the version.
    @discardableResult
    mutating func recordHeader(magic: [UInt8], record: String, versions: [UInt32]) throws -> UInt32 {
        guard Array(try raw(magic.count, "magic")) == magic else {
            throw fail("magic", "not \(record) (expected \"\(String(decoding: magic.filter { $0 != 0 }, as: UTF8.self))\")")
        }
        let v = try u32("version")
        guard versions.contains(v) else {
            let reads = versions.count == 1 ? "version \(versions[0])" : "versions " + versions.map { "\($0)" }.joined(separator: " and ")
            throw fail("version", "version \(v) is not supported (this agent reads \(reads))")
        }
        return v
    }

    /// Reads the record's last field, `crc32c`: the CRC32C of every byte before it. Bytes after
    /// it are refused before the checksum is (they mean the record is not the length it says).
    mutating func trailingCRC32C() throws {
        let before = bytes[bytes.startIndex..<bytes.startIndex + offset]
        let stored = try u32("crc32c")
        try expectEnd()
        let actual = CRC32C.checksum(before)
        guard stored == actual else {
            throw fail("crc32c", "checksum mismatch (stored \(String(format8: stored)), computed \(String(format8: actual)))")
        }
    }
}
