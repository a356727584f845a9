import VZCore

/// Windows hibernation and Fast Startup: the RAM image in \hiberfil.sys holds newer metadata than
/// the disk, so $Bitmap cannot be trusted. hiberfil.sys is looked up by name in the root
/// directory's index ($I30: $INDEX_ROOT, then every in-use INDX block of $INDEX_ALLOCATION), and
/// its first 4 KiB read through its runlist; like ntfs-3g (`ntfs_volume_check_hiberfile`) a
/// "hibr"/"HIBR" header, or a file shorter than that page, means hibernated. "RSTR" (a resume
/// under way) counts as hibernated too; "wake" or zeros (resumed, or booted normally) do not.
extension NTFSFilesystem {
    static let hibernatedSignatures = ["hibr", "HIBR", "rstr", "RSTR"]
    /// The root index read at most: far more than a root directory's, bounded for a corrupt one.
    static let maxRootIndexBytes: UInt64 = 16 << 20

    /// nil when not hibernated, else the reason the volume is all active.
    func hibernationReason() throws -> String? {
        guard let ref = try findInRoot("hiberfil.sys") else { return nil }
        let number = Int(ref & 0xFFFF_FFFF_FFFF)
        guard number > 0, number < 1 << 32 else { throw ParseFailure("root index: hiberfil.sys names MFT record \(number)") }
        let attrs = try attributes(try record(number), number: number)
        guard let data = attrs.first(where: { $0.type == 0x80 && $0.nameLength == 0 }) else {
            if attrs.contains(where: { $0.type == 0x20 }) {
                return "unsupported: hiberfil.sys's data is behind an attribute list (its hibernation state cannot be read)"
            }
            throw ParseFailure("MFT record \(number) (hiberfil.sys) has no unnamed $DATA")
        }
        let f = Fields(Array(data.bytes), "hiberfil.sys $DATA")
        var head: [UInt8]
        if data.nonResident {
            let size = try f.u64(0x30), initialized = try f.u64(0x38)
            if size < 4096 { return NTFSFilesystem.hibernated("hiberfil.sys is shorter than its 4 KiB header") }
            let stored = Int(Swift.min(initialized, 4096))
            head = stored > 0 ? try readStream(try runs(of: data), offset: 0, count: stored, limit: nil) : []
            head += [UInt8](repeating: 0, count: 4096 - stored)
        } else {
            let length = Int(try f.u32(0x10)), offset = Int(try f.u16(0x14))
            if length < 4096 { return NTFSFilesystem.hibernated("hiberfil.sys is shorter than its 4 KiB header") }
            head = Array(try f.raw(offset, 4))
        }
        let signature = String(decoding: head.prefix(4), as: UTF8.self)
        if NTFSFilesystem.hibernatedSignatures.contains(signature) {
            return NTFSFilesystem.hibernated("hiberfil.sys holds a hibernation image (\"\(signature)\": Windows hibernated or shut down with Fast Startup)")
        }
        return nil
    }

    static func hibernated(_ why: String) -> String { "hibernated: \(why); the free-space bitmap cannot be trusted" }

    /// The MFT reference of `name` (ASCII, compared case-insensitively) in the root directory.
    func findInRoot(_ name: String) throws -> UInt64? {
        let attrs = try attributes(try record(5), number: 5)
        if attrs.contains(where: { $0.type == 0x20 }) {
            throw ParseFailure("the root directory (MFT record 5) has an attribute list (not followed)")
        }
        func named(_ type: UInt32) -> Attribute? {
            attrs.first { a in
                guard a.type == type, a.nameLength == 4, let off = try? Fields(Array(a.bytes), "attribute").u16(0xA) else { return false }
                let b = Array(a.bytes)
                return Int(off) + 8 <= b.count && b[Int(off)..<(Int(off) + 8)].elementsEqual(Array("$I30".utf16).flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
            }
        }
        guard let root = named(0x90), !root.nonResident else { throw ParseFailure("the root directory has no resident $INDEX_ROOT $I30") }
        let rf = Fields(Array(root.bytes), "root $INDEX_ROOT")
        let value = Int(try rf.u16(0x14))
        let blockSize = Int(try rf.u32(value + 8))
        if let ref = try search(Array(root.bytes), header: value + 16, name: name, what: "root $INDEX_ROOT") { return ref }
        guard let alloc = named(0xA0) else { return nil }
        guard alloc.nonResident, blockSize >= 512, blockSize <= 65536, blockSize % 512 == 0 else {
            throw ParseFailure("root $INDEX_ALLOCATION: index block size \(blockSize)")
        }
        let size = try Fields(Array(alloc.bytes), "root $INDEX_ALLOCATION").u64(0x30)
        guard size <= NTFSFilesystem.maxRootIndexBytes else { throw ParseFailure("root $INDEX_ALLOCATION of \(size) bytes") }
        let runs = try runs(of: alloc)
        // Only blocks marked in use in $BITMAP $I30 hold live entries.
        var inUse: [UInt8]?
        if let bitmap = named(0xB0), !bitmap.nonResident {
            let bf = Fields(Array(bitmap.bytes), "root $BITMAP")
            inUse = Array(try bf.raw(Int(try bf.u16(0x14)), Int(try bf.u32(0x10))))
        }
        for i in 0..<Int(size / UInt64(blockSize)) {
            if let bits = inUse, i / 8 >= bits.count || bits[i / 8] & (1 << UInt8(i % 8)) == 0 { continue }
            var block = try readStream(runs, offset: UInt64(i * blockSize), count: blockSize, limit: nil)
            let what = "root index block \(i)"
            guard Fields(block, what).matches(0, "INDX") else { throw ParseFailure("\(what) has no INDX signature") }
            try applyFixups(&block, what: what)
            if let ref = try search(block, header: 0x18, name: name, what: what) { return ref }
        }
        return nil
    }

    /// Walks the entries after an index header at `header`; returns the file reference of a
    /// FILE_NAME key that is `name`.
    private func search(_ b: [UInt8], header: Int, name: String, what: String) throws -> UInt64? {
        let f = Fields(b, what)
        let first = header + Int(try f.u32(header)), end = header + Int(try f.u32(header + 4))
        guard first >= header + 16, end <= b.count, first <= end else { throw ParseFailure("\(what): index header (entries \(first)..<\(end))") }
        let wanted = Array(name.lowercased().utf16)
        var at = first
        while at + 16 <= end {
            let length = Int(try f.u16(at + 8)), keyLength = Int(try f.u16(at + 10)), flags = try f.u16(at + 12)
            guard length >= 16, at + length <= end else { throw ParseFailure("\(what): index entry at \(at) of \(length) bytes") }
            if flags & 2 != 0 { return nil }
            if keyLength >= 0x42, 16 + keyLength <= length {
                let key = at + 16
                let n = Int(try f.u8(key + 0x40))
                if n == wanted.count, 0x42 + 2 * n <= keyLength, try f.u64(key) & 0xFFFF_FFFF_FFFF == 5 {
                    let units = try (0..<n).map { try f.u16(key + 0x42 + 2 * $0) }
                    if units.map({ $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }) == wanted { return try f.u64(at) }
                }
            }
            at += length
        }
        throw ParseFailure("\(what): entries without a last entry")
    }
}
