import VZCore

/// One partition as a table describes it, in disk bytes.
struct PartitionEntry: Equatable {
    var name: String
    var scheme: String
    var type: String
    var offset: UInt64
    var length: UInt64
    /// Set when the type alone says the contents cannot be mapped (RAID member, LDM, MSR, ...).
    var policy: String?
}

/// What sector 0 and the GPT headers say about the disk's layout.
enum PartitionLayout: Equatable {
    /// No partition table: the disk may hold a filesystem directly.
    case none
    /// `reserved`: the table's own sectors (MBR, EBRs), kept active whatever a partition
    /// overlapping them claims.
    case table(scheme: String, entries: [PartitionEntry], warnings: [String], reserved: [Extent] = [])
    /// A table that cannot be trusted (both GPT headers bad): the whole disk is active.
    case corrupt(scheme: String, reason: String)
}

enum PartitionTable {
    static let sector: UInt64 = 512
    static let extendedTypes: Set<UInt8> = [0x05, 0x0F, 0x85]
    /// MBR types whose contents are never mapped: LDM (dynamic disk), Linux RAID, hibernation.
    static let policyTypes: [UInt8: String] = [0x42: "unsupported: Windows dynamic disk (LDM)",
                                               0xFD: "unsupported: Linux RAID member", 0xA0: "unsupported: hibernation partition"]
    /// At most this many logical partitions are followed; a longer chain is a loop or damage.
    static let maxLogical = 128

    static func parse(_ reader: MetadataReader) -> PartitionLayout {
        let capacity = reader.disk.capacity
        guard capacity >= sector, let s0 = try? reader.read(at: 0, count: Int(sector)) else { return .none }
        let mbr = MBRSector(s0)
        if let mbr, mbr.entries.contains(where: { $0.type == 0xEE }) {
            let gpt = GPT.parse(reader)
            if case .none = gpt { return .corrupt(scheme: "gpt", reason: "a protective MBR but no GPT header, primary or backup") }
            return gpt
        }
        // No protective MBR, but a GPT header anyway (a hybrid or a damaged MBR): trust the GPT if it checks out.
        if case let .table(scheme, entries, warnings, reserved) = GPT.parse(reader) {
            return .table(scheme: scheme, entries: entries, warnings: warnings + ["GPT found without a protective MBR"],
                          reserved: reserved)
        }
        guard let mbr, mbr.entries.contains(where: { !$0.isEmpty }) else { return .none }
        return parseMBR(mbr, reader)
    }

    private static func parseMBR(_ mbr: MBRSector, _ reader: MetadataReader) -> PartitionLayout {
        let sectors = reader.disk.capacity / sector
        var entries: [PartitionEntry] = []
        var warnings: [String] = []
        var logicalNumber = 5
        var reserved = [Extent(offset: 0, length: sector)]
        for (i, e) in mbr.entries.enumerated() where !e.isEmpty {
            let name = "p\(i + 1)"
            guard UInt64(e.start) < sectors, e.start > 0 else {
                warnings.append("MBR partition \(name) starts at sector \(e.start), outside the disk (\(sectors) sectors): ignored, its space stays active")
                continue
            }
            if extendedTypes.contains(e.type) {
                walkExtended(base: UInt64(e.start), count: UInt64(e.count), reader, &entries, &warnings, &logicalNumber, &reserved)
                continue
            }
            entries.append(entry(name, e.type, start: UInt64(e.start), count: UInt64(e.count), sectors: sectors))
        }
        return .table(scheme: "mbr", entries: entries, warnings: warnings, reserved: reserved)
    }

    /// Follows the EBR chain of an extended partition: each EBR's first entry is a logical
    /// partition relative to that EBR, its second the next EBR relative to the extended start.
    private static func walkExtended(base: UInt64, count: UInt64, _ reader: MetadataReader, _ entries: inout [PartitionEntry],
                                     _ warnings: inout [String], _ number: inout Int, _ reserved: inout [Extent]) {
        let sectors = reader.disk.capacity / sector
        let limit = Swift.min(sectors, base + count)
        var ebr = base
        var visited = Set<UInt64>()
        while true {
            guard visited.insert(ebr).inserted else {
                warnings.append("the extended partition's EBR chain loops back to sector \(ebr): stopped there")
                return
            }
            guard visited.count <= maxLogical else {
                warnings.append("the extended partition has more than \(maxLogical) logical partitions: stopped there")
                return
            }
            guard ebr < limit, let bytes = try? reader.read(at: ebr * sector, count: Int(sector)), let s = MBRSector(bytes) else {
                warnings.append("the EBR at sector \(ebr) is unreadable or has no 0x55AA signature: the rest of the extended partition stays active")
                return
            }
            reserved.append(Extent(offset: ebr * sector, length: sector))
            let logical = s.entries[0], link = s.entries[1]
            if !logical.isEmpty {
                let start = ebr + UInt64(logical.start)
                if start < limit, logical.start > 0 {
                    entries.append(entry("p\(number)", logical.type, start: start, count: UInt64(logical.count), sectors: limit))
                } else {
                    warnings.append("logical partition p\(number) (EBR at sector \(ebr)) lies outside its extended partition: ignored, its space stays active")
                }
                number += 1
            }
            guard !link.isEmpty, extendedTypes.contains(link.type) else { return }
            ebr = base + UInt64(link.start)
        }
    }

    private static func entry(_ name: String, _ type: UInt8, start: UInt64, count: UInt64, sectors: UInt64) -> PartitionEntry {
        let end = Swift.min(sectors, start + count)
        let hex = "0x" + String(type, radix: 16, uppercase: true).leftPadded(to: 2)
        return PartitionEntry(name: name, scheme: "mbr", type: hex, offset: start * sector, length: (end - start) * sector,
                              policy: policyTypes[type])
    }
}

/// One MBR-format sector (the MBR or an EBR): four 16-byte entries and the 0x55AA signature.
struct MBRSector {
    struct Entry {
        var status: UInt8, type: UInt8, start: UInt32, count: UInt32
        var isEmpty: Bool { type == 0 || count == 0 }
    }
    let entries: [Entry]

    /// Nil unless the sector ends in 0x55AA and every entry's status byte is 0x00 or 0x80 (a FAT
    /// or NTFS boot sector has code there instead).
    init?(_ s: [UInt8]) {
        guard s.count >= 512, s[510] == 0x55, s[511] == 0xAA else { return nil }
        let f = Fields(s, "MBR")
        var out: [Entry] = []
        for i in 0..<4 {
            let o = 0x1BE + 16 * i
            guard let status = try? f.u8(o), status == 0 || status == 0x80,
                  let type = try? f.u8(o + 4), let start = try? f.u32(o + 8), let count = try? f.u32(o + 12) else { return nil }
            out.append(Entry(status: status, type: type, start: start, count: count))
        }
        entries = out
    }
}

extension String {
    func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
