import VZCore

/// The GUID partition table: the primary header at LBA 1, checked (signature, header CRC, its
/// own LBA, entry-array CRC), else the backup header at the disk's last LBA.
enum GPT {
    /// The entry array is at most this large (the usual one is 16 KiB).
    static let maxArrayBytes = 4 << 20

    static let policyTypes: [String: String] = [
        "E3C9E316-0B5C-4DB8-817D-F92DF00215AE": "unsupported: Microsoft reserved partition",
        "21686148-6449-6E6F-744E-656564454649": "unsupported: BIOS boot partition",
        "5808C8AA-7E8F-42E0-85D2-E1E90434CFB3": "unsupported: Windows dynamic disk (LDM) metadata",
        "AF9B60A0-1431-4F62-BC68-3311714A69AD": "unsupported: Windows dynamic disk (LDM) data",
        "A19D880F-05FC-4D3B-A006-743F0F84911E": "unsupported: Linux RAID member",
    ]

    struct Header {
        var myLBA: UInt64, alternateLBA: UInt64, firstUsable: UInt64, lastUsable: UInt64
        var entriesLBA: UInt64, count: UInt32, entrySize: UInt32, arrayCRC: UInt32
    }

    static func parse(_ reader: MetadataReader) -> PartitionLayout {
        var reasons: [String] = []
        for sectorSize in [UInt64(512), 4096] {
            guard reader.disk.capacity / sectorSize >= 3 else { continue }
            let lastLBA = reader.disk.capacity / sectorSize - 1
            var primaryAlternate: UInt64?
            var seen = false
            do {
                let h = try header(reader, lba: 1, sectorSize: sectorSize)
                seen = true
                primaryAlternate = h.alternateLBA
                let (entries, w) = try self.entries(reader, h, sectorSize: sectorSize)
                return .table(scheme: "gpt", entries: entries, warnings: w, reserved: reserved(h, sectorSize, reader))
            } catch is NoHeader {
            } catch {
                seen = true
                reasons.append("primary GPT header (\(sectorSize)-byte sectors): \(error)")
            }
            var backupReasons: [String] = []
            for lba in Set([primaryAlternate, lastLBA].compactMap { $0 }).sorted() where lba > 1 && lba <= lastLBA {
                do {
                    let h = try header(reader, lba: lba, sectorSize: sectorSize)
                    let (entries, w) = try self.entries(reader, h, sectorSize: sectorSize)
                    return .table(scheme: "gpt", entries: entries,
                                  warnings: w + reasons + ["the primary GPT is unusable: used the backup GPT header at LBA \(lba)"],
                                  reserved: reserved(h, sectorSize, reader))
                } catch is NoHeader {
                } catch {
                    seen = true
                    backupReasons.append("backup GPT header at LBA \(lba): \(error)")
                }
            }
            if seen { return .corrupt(scheme: "gpt", reason: (reasons + backupReasons).joined(separator: "; ")) }
        }
        return .none
    }

    /// Everything outside the usable LBAs (protective MBR, headers, entry arrays): always active.
    static func reserved(_ h: Header, _ sectorSize: UInt64, _ reader: MetadataReader) -> [Extent] {
        let end = reader.disk.capacity
        let usableEnd = Swift.min(end, (h.lastUsable + 1) * sectorSize)
        return [Extent(offset: 0, length: h.firstUsable * sectorSize), Extent(offset: usableEnd, length: end - usableEnd)]
    }

    /// No "EFI PART" at LBA 1 at all: not a GPT at this sector size.
    struct NoHeader: Error {}

    static func header(_ reader: MetadataReader, lba: UInt64, sectorSize: UInt64) throws -> Header {
        let s = try reader.read(at: lba * sectorSize, count: Int(sectorSize))
        let f = Fields(s, "GPT header at LBA \(lba)")
        guard f.matches(0, "EFI PART") else { throw NoHeader() }
        let size = Int(try f.u32(12))
        guard size >= 92, size <= s.count else { throw ParseFailure("header size \(size) is not between 92 and \(s.count)") }
        var copy = Array(s[0..<size])
        copy[16] = 0; copy[17] = 0; copy[18] = 0; copy[19] = 0
        let crc = try f.u32(16)
        guard Checksums.crc32(copy) == crc else { throw ParseFailure("header CRC mismatch") }
        let h = Header(myLBA: try f.u64(24), alternateLBA: try f.u64(32), firstUsable: try f.u64(40), lastUsable: try f.u64(48),
                       entriesLBA: try f.u64(72), count: try f.u32(80), entrySize: try f.u32(84), arrayCRC: try f.u32(88))
        let lastLBA = reader.disk.capacity / sectorSize - 1
        guard h.myLBA == lba else { throw ParseFailure("MyLBA is \(h.myLBA), read at \(lba)") }
        guard h.firstUsable <= h.lastUsable, h.lastUsable <= lastLBA else {
            throw ParseFailure("usable LBAs \(h.firstUsable)...\(h.lastUsable) do not fit a disk of \(lastLBA + 1) sectors")
        }
        guard h.entrySize >= 128, h.entrySize % 8 == 0 else { throw ParseFailure("entry size \(h.entrySize) is not a multiple of 8 of at least 128") }
        return h
    }

    static func entries(_ reader: MetadataReader, _ h: Header, sectorSize: UInt64) throws -> (entries: [PartitionEntry], warnings: [String]) {
        let bytes = UInt64(h.count) * UInt64(h.entrySize)
        guard bytes <= UInt64(maxArrayBytes) else { throw ParseFailure("an entry array of \(bytes) bytes is larger than \(maxArrayBytes)") }
        guard h.entriesLBA <= reader.disk.capacity / sectorSize else { throw ParseFailure("entry array LBA \(h.entriesLBA) is outside the disk") }
        let arraySectors = (bytes + sectorSize - 1) / sectorSize
        guard h.entriesLBA + arraySectors <= h.firstUsable || h.entriesLBA > h.lastUsable else {
            throw ParseFailure("the entry array (LBA \(h.entriesLBA), \(arraySectors) sectors) overlaps the usable LBAs")
        }
        let array = try reader.read(at: h.entriesLBA * sectorSize, count: Int(bytes))
        guard Checksums.crc32(array) == h.arrayCRC else { throw ParseFailure("entry array CRC mismatch") }
        var out: [PartitionEntry] = []
        var skipped = 0
        let lastLBA = reader.disk.capacity / sectorSize - 1
        for i in 0..<Int(h.count) {
            let f = Fields(array, at: i * Int(h.entrySize), "GPT entry \(i + 1)")
            let type = try f.raw(0, 16)
            guard type.contains(where: { $0 != 0 }) else { continue }
            let first = try f.u64(32), last = try f.u64(40)
            // A range outside the disk or reversed cannot be mapped: skipping the entry keeps its space active.
            guard first <= last, first >= h.firstUsable, last <= h.lastUsable, last <= lastLBA else { skipped += 1; continue }
            let guid = formatGUID(Array(type))
            out.append(PartitionEntry(name: "p\(i + 1)", scheme: "gpt", type: guid, offset: first * sectorSize,
                                      length: (last - first + 1) * sectorSize, policy: policyTypes[guid]))
        }
        let w = skipped == 0 ? [] : ["\(skipped) GPT entr\(skipped == 1 ? "y lies" : "ies lie") outside the usable LBAs or the disk: ignored, their space stays active"]
        return (out, w)
    }

    /// The mixed-endian on-disk GUID as text: the first three fields little-endian.
    static func formatGUID(_ b: [UInt8]) -> String {
        func hex(_ bytes: [UInt8]) -> String { bytes.map { String($0, radix: 16, uppercase: true).leftPadded(to: 2) }.joined() }
        return [hex([b[3], b[2], b[1], b[0]]), hex([b[5], b[4]]), hex([b[7], b[6]]), hex(Array(b[8..<10])), hex(Array(b[10..<16]))]
            .joined(separator: "-")
    }
}
