import VZCore

/// What a volume's contents came to: mapped (its free bytes are in the collector), or all active
/// with a reason.
enum ProbeOutcome: Equatable {
    case mapped(String, [String])
    case allActive(String, String)
}

/// Recognises what a volume holds by its signatures (never by the partition type) and hands it
/// to the parser that maps it.
enum VolumeProber {
    /// Enough of the volume's start for every signature probed: swap with 64 KiB pages, btrfs at 64 KiB + 64.
    static let headBytes = 65536 + 4096

    /// - Parameter insideLV: the window is an LV: a PV inside it is not followed (no recursion).
    /// - Returns: the outcome, the disk-absolute free extents, the granule they were kept at, and
    ///   the volumes found inside (an LVM PV's LVs).
    static func probe(_ window: VolumeWindow, granularity: UInt64, coarseGranularity: UInt64, maxExtents: Int,
                      insideLV: Bool = false, journalOverlay: Bool = false) -> (ProbeOutcome, ExtentSet, UInt64, [Volume]) {
        var collector = FreeCollector(base: window.base, length: window.length, granularity: granularity,
                                      coarseGranularity: coarseGranularity, maxExtents: maxExtents)
        var children: [Volume] = []
        let outcome = probe(window, &collector, &children, granularity, coarseGranularity, maxExtents, insideLV, journalOverlay)
        if case .mapped = outcome { return (outcome, collector.result(), collector.granularity, children) }
        return (outcome, ExtentSet(), granularity,
                children.map { var v = $0; v.activeBytes = v.size; v.allActive = true; v.reason = v.reason ?? "the PV counts as all active"; return v })
    }

    private static func probe(_ window: VolumeWindow, _ collector: inout FreeCollector, _ children: inout [Volume],
                              _ granularity: UInt64, _ coarse: UInt64, _ maxExtents: Int, _ insideLV: Bool,
                              _ journalOverlay: Bool) -> ProbeOutcome {
        let n = Int(Swift.min(UInt64(headBytes), window.length))
        guard let head = try? window.read(at: 0, count: n) else { return .allActive("unknown", "corrupt: unreadable") }
        let f = Fields(head, "volume start")
        if f.matches(3, "NTFS    ") { return NTFSFilesystem.map(window, &collector) }
        if f.matches(3, "-FVE-FS-") { return .allActive("bitlocker", "encrypted: BitLocker") }
        if f.matches(0, "LUKS\u{BA}\u{BE}") || head.starts(with: [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]) {
            return .allActive("luks", "encrypted: LUKS")
        }
        if f.matches(3, "EXFAT   ") { return .allActive("exfat", "unsupported: exFAT is not mapped yet") }
        if f.matches(3, "ReFS") { return .allActive("refs", "unsupported: ReFS") }
        if f.matches(0, "XFSB") { return XFSFilesystem.map(window, &collector) }
        if f.matches(65536 + 64, "_BHRfS_M") { return .allActive("btrfs", "unsupported: btrfs") }
        for s in 0..<4 where f.matches(s * 512, "LABELONE") {
            if insideLV { return .allActive("lvm2", "unsupported: a PV inside an LV") }
            return LVMPhysicalVolume.map(window, granularity: granularity, coarse: coarse, maxExtents: maxExtents,
                                         journalOverlay: journalOverlay, &collector, &children)
        }
        if ExtFilesystem.isExt(head) { return ExtFilesystem.map(window, &collector, journalOverlay: journalOverlay) }
        if let swap = SwapArea.detect(head) { return SwapArea.map(head, swap, window, &collector) }
        if let bpb = FATFilesystem.bpb(head) { return FATFilesystem.map(window, bpb, &collector) }
        return .allActive("unknown", "unknown: no filesystem signature recognised")
    }
}
