import VZCore

/// The entry point of ABM: reads a disk's partition tables and filesystem metadata through its
/// `BlockReader` and returns the bytes that must be replicated. Pure: all I/O goes through the
/// reader it is given. Nothing here throws: a volume that cannot be mapped is all active, and a
/// disk whose table cannot be trusted is all active, each with a warning.
public enum ActiveBlockMapper {
    /// - Parameters:
    ///   - granularity: free ranges not covering a whole aligned granule of this size are dropped
    ///     (the replication block size, or a divisor of it: 4096 lets the source zero the free
    ///     parts of mixed blocks).
    ///   - coarseGranularity: when the free set passes `maxExtents` extents, it is coarsened to
    ///     this (the replication block size), so memory is bounded like the block map's.
    ///   - journalOverlay: map an ext4 filesystem that needs recovery through its journal (every
    ///     group whose block bitmap a journal descriptor names stays active) instead of counting
    ///     it all active. Off by default: a dirty volume is all active.
    public static func map(_ disk: BlockReader, granularity: UInt64 = 4096, coarseGranularity: UInt64? = nil,
                           maxExtents: Int = 1 << 22, journalOverlay: Bool = false) -> ActiveBlockMap {
        let coarse = Swift.max(coarseGranularity ?? granularity, granularity)
        let reader = MetadataReader(disk: disk)
        let capacity = disk.capacity
        let whole = Extent(offset: 0, length: capacity)
        var warnings: [String] = []
        var volumes: [Volume] = []
        var free = ExtentSet()
        var coarsened = false
        var protected = ExtentSet()

        func add(_ name: String, _ kind: Volume.Kind, _ scheme: String, _ type: String?, offset: UInt64, length: UInt64,
                 policy: String?) {
            let window = VolumeWindow(reader: reader, base: offset, length: length)
            let (outcome, volumeFree): (ProbeOutcome, ExtentSet)
            var children: [Volume] = []
            defer { volumes += children }
            if let policy {
                (outcome, volumeFree) = (.allActive("unknown", policy), ExtentSet())
            } else {
                let (o, f, g, inside) = VolumeProber.probe(window, granularity: granularity, coarseGranularity: coarse, maxExtents: maxExtents,
                                                           journalOverlay: journalOverlay)
                (outcome, volumeFree) = (o, f)
                if g != granularity { coarsened = true }
                children = inside
            }
            // Only the volume's own bytes can be freed by what is inside it.
            let clipped = volumeFree.intersection(ExtentSet([Extent(offset: offset, length: length)]))
            free = free.union(clipped)
            if free.extents.count > maxExtents {
                free = free.shrunk(to: coarse); coarsened = true
            }
            switch outcome {
            case let .mapped(fs, notes):
                for n in notes { warnings.append("\(name) (\(fs)): \(n)") }
                volumes.append(Volume(name: name, kind: kind, scheme: scheme, partitionType: type, filesystem: fs, offset: offset,
                                      size: length, activeBytes: length - clipped.totalLength, allActive: false, reason: nil))
            case let .allActive(fs, reason):
                if !reason.hasPrefix("unknown") && !reason.hasPrefix("unsupported") {
                    warnings.append("\(name) (\(fs)) is all active: \(reason)")
                }
                volumes.append(Volume(name: name, kind: kind, scheme: scheme, partitionType: type, filesystem: fs, offset: offset,
                                      size: length, activeBytes: length, allActive: true, reason: reason))
            }
        }

        switch PartitionTable.parse(reader) {
        case .none:
            add("disk", .disk, "none", nil, offset: 0, length: capacity, policy: nil)
        case let .corrupt(scheme, reason):
            warnings.append("the \(scheme.uppercased()) partition table cannot be trusted (\(reason)): the whole disk is active")
            volumes.append(Volume(name: "disk", kind: .disk, scheme: scheme, partitionType: nil, filesystem: "unknown", offset: 0,
                                  size: capacity, activeBytes: capacity, allActive: true, reason: "corrupt: \(reason)"))
        case let .table(scheme, entries, tableWarnings, reserved):
            warnings += tableWarnings
            protected = ExtentSet(reserved)
            for e in entries {
                // Two partitions claiming the same bytes: neither can prove the other's bytes free.
                let overlaps = entries.filter { $0 != e && $0.offset < e.offset + e.length && e.offset < $0.offset + $0.length }
                let policy = overlaps.isEmpty ? e.policy : "corrupt: overlaps \(overlaps.map(\.name).joined(separator: ", "))"
                add(e.name, .partition, scheme, e.type, offset: e.offset, length: e.length, policy: policy)
            }
        }
        // The tables' own sectors stay active whatever a partition overlapping them claims.
        let active = ExtentSet([whole]).subtracting(free).union(protected.intersection(ExtentSet([whole])))
        return ActiveBlockMap(capacity: capacity, active: active, volumes: volumes,
                              granularity: coarsened ? coarse : granularity, metadataBytesRead: reader.bytesRead,
                              warnings: warnings)
    }
}
