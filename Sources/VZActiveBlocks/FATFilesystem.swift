import VZCore

/// FAT12/16/32: a cluster is free when its entry is 0 in every FAT copy. The reserved sectors,
/// the FATs, the FAT12/16 root directory and the tail after the last whole cluster stay active.
enum FATFilesystem {
    struct BPB {
        var bytesPerSector: UInt64, sectorsPerCluster: UInt64, reserved: UInt64, fats: UInt64
        var rootEntries: UInt64, totalSectors: UInt64, fatSectors: UInt64
        var rootDirSectors: UInt64 { (rootEntries * 32 + bytesPerSector - 1) / bytesPerSector }
        var dataStart: UInt64 { reserved + fats * fatSectors + rootDirSectors }
        var clusters: UInt64 { (totalSectors - dataStart) / sectorsPerCluster }
        var bits: Int { clusters < 4085 ? 12 : (clusters < 65525 ? 16 : 32) }
        var clusterBytes: UInt64 { bytesPerSector * sectorsPerCluster }
    }

    /// Nil unless sector 0 holds a sane BPB: a jump, power-of-two sector and cluster sizes, one
    /// to four FATs, a size that leaves a data area.
    static func bpb(_ s: [UInt8]) -> BPB? {
        let f = Fields(s, "FAT boot sector")
        guard let j = try? f.u8(0), j == 0xEB || j == 0xE9, let bps16 = try? f.u16(0x0B), let spc8 = try? f.u8(0x0D),
              let rsv = try? f.u16(0x0E), let nf = try? f.u8(0x10), let root = try? f.u16(0x11),
              let tot16 = try? f.u16(0x13), let media = try? f.u8(0x15), let fs16 = try? f.u16(0x16),
              let tot32 = try? f.u32(0x20), let fs32 = try? f.u32(0x24) else { return nil }
        let bps = UInt64(bps16), spc = UInt64(spc8)
        guard [512, 1024, 2048, 4096].contains(bps), spc > 0, spc & (spc - 1) == 0, rsv >= 1, (1...4).contains(nf),
              media == 0xF0 || media >= 0xF8 else { return nil }
        let total = tot16 != 0 ? UInt64(tot16) : UInt64(tot32)
        let fatSize = fs16 != 0 ? UInt64(fs16) : UInt64(fs32)
        guard total > 0, fatSize > 0 else { return nil }
        let b = BPB(bytesPerSector: bps, sectorsPerCluster: spc, reserved: UInt64(rsv), fats: UInt64(nf),
                    rootEntries: UInt64(root), totalSectors: total, fatSectors: fatSize)
        guard b.dataStart < total, b.clusters > 0 else { return nil }
        if b.bits == 32 { guard root == 0, fs16 == 0 else { return nil } }
        // The FAT must have an entry for every cluster.
        guard fatSize * bps * 8 >= (b.clusters + 2) * UInt64(b.bits == 12 ? 12 : b.bits) else { return nil }
        return b
    }

    static func map(_ window: VolumeWindow, _ b: BPB, _ collector: inout FreeCollector) -> ProbeOutcome {
        let name = "fat\(b.bits)"
        guard b.totalSectors <= window.length / b.bytesPerSector else {
            return .allActive(name, "corrupt: \(b.totalSectors) sectors do not fit the volume (\(window.length) bytes)")
        }
        do {
            let fatBytes = b.fatSectors * b.bytesPerSector
            let entryBytes = b.bits == 12 ? (b.clusters + 2) * 3 / 2 + 1 : (b.clusters + 2) * UInt64(b.bits / 8)
            let needed = Swift.min(fatBytes, entryBytes)
            // FAT[1]'s clean-shutdown and no-error bits (FAT16, FAT32; FAT12 has none).
            let head = try window.read(at: b.reserved * b.bytesPerSector, count: 8)
            let hf = Fields(head, "FAT")
            if b.bits == 16, try hf.u16(2) & 0xC000 != 0xC000 {
                return .allActive(name, "dirty: the volume was not cleanly unmounted or had I/O errors (FAT[1] = 0x\(String(try hf.u16(2), radix: 16)))")
            }
            if b.bits == 32, try hf.u32(4) & 0x0C00_0000 != 0x0C00_0000 {
                return .allActive(name, "dirty: the volume was not cleanly unmounted or had I/O errors (FAT[1] = 0x\(String(try hf.u32(4), radix: 16)))")
            }
            // Walk all copies chunk by chunk; a chunk is a whole number of 3-byte FAT12 pairs and of entries.
            let chunk = UInt64(3 << 18)
            var cluster: UInt64 = 2
            let clusterEnd = b.clusters + 2
            var offset: UInt64 = 0
            var runStart: UInt64?
            func flushRun(_ upTo: UInt64) {
                if let r = runStart {
                    let dataOffset = b.dataStart * b.bytesPerSector
                    collector.addFree(dataOffset + (r - 2) * b.clusterBytes, (upTo - r) * b.clusterBytes)
                    runStart = nil
                }
            }
            while offset < needed && cluster < clusterEnd {
                let n = Swift.min(chunk, needed - offset)
                var copies: [[UInt8]] = []
                for k in 0..<b.fats {
                    copies.append(try window.read(at: (b.reserved + k * b.fatSectors) * b.bytesPerSector + offset, count: Int(n)))
                }
                // Entries whose bytes lie wholly in this chunk.
                let firstEntry = offset * 8 / UInt64(b.bits)
                var e = Swift.max(firstEntry, cluster)
                while e < clusterEnd {
                    let bitOffset = e * UInt64(b.bits)
                    let byteStart = bitOffset / 8
                    let byteEnd = (bitOffset + UInt64(b.bits) + 7) / 8
                    guard byteEnd <= offset + n else { break }
                    var isFree = true
                    for c in copies {
                        let p = Int(byteStart - offset)
                        let value: UInt32
                        switch b.bits {
                        case 12:
                            let v = UInt32(c[p]) | UInt32(c[p + 1]) << 8
                            value = e & 1 == 1 ? v >> 4 : v & 0xFFF
                        case 16: value = UInt32(c[p]) | UInt32(c[p + 1]) << 8
                        default:
                            value = (UInt32(c[p]) | UInt32(c[p + 1]) << 8 | UInt32(c[p + 2]) << 16 | UInt32(c[p + 3]) << 24) & 0x0FFF_FFFF
                        }
                        if value != 0 { isFree = false; break }
                    }
                    if isFree { if runStart == nil { runStart = e } } else { flushRun(e) }
                    e += 1
                }
                cluster = e
                offset += n
            }
            flushRun(cluster)
            guard cluster >= clusterEnd else { return .allActive(name, "corrupt: the FAT ends before cluster \(cluster)") }
            return .mapped(name, [])
        } catch {
            return .allActive(name, "corrupt: \(error)")
        }
    }
}
