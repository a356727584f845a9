import VZCore

/// What ABM found on one disk: the bytes that must be replicated, the volumes it looked into,
/// and what reading the metadata cost.
public struct ActiveBlockMap: Equatable, Sendable {
    /// The disk's size in bytes.
    public var capacity: UInt64
    /// Every byte not proven free: partition tables, gaps, unknown volumes, used blocks.
    public var active: ExtentSet
    /// The volumes found (partitions, or the whole disk when it has no partition table).
    public var volumes: [Volume]
    /// The granule free ranges were kept at: the requested one, or the coarse one when the set
    /// had to be coarsened to stay within its extent limit.
    public var granularity: UInt64
    /// Metadata bytes read to build the map.
    public var metadataBytesRead: UInt64
    /// One sentence per volume that counts as all active for a reason an operator should see
    /// (corrupt, dirty, unreadable), and per partition table problem.
    public var warnings: [String]

    public var activeBytes: UInt64 { active.totalLength }
}

/// One partition (or the whole disk) and what ABM made of it.
public struct Volume: Equatable, Sendable {
    public enum Kind: String, Sendable {
        /// A primary or logical MBR partition, or a GPT entry.
        case partition
        /// The whole disk, holding a filesystem with no partition table (or nothing known).
        case disk
        /// An LVM2 logical volume ("vg/lv"), inside a physical volume listed before it.
        case logicalVolume = "lv"
    }

    /// "p1", "p5" (logical), or "disk".
    public var name: String
    public var kind: Kind
    /// "mbr", "gpt" or "none".
    public var scheme: String
    /// The MBR type byte ("0x83") or the GPT type GUID, when there is one.
    public var partitionType: String?
    /// "ext4", "ext3", "ext2", "fat12", "fat16", "fat32", "swap", "ntfs", "xfs", "btrfs",
    /// "lvm2", "luks", "bitlocker", ..., or "unknown".
    public var filesystem: String
    public var offset: UInt64
    public var size: UInt64
    /// Bytes of the volume that are active (the whole size when `allActive`).
    public var activeBytes: UInt64
    /// True when nothing of the volume could be proven free.
    public var allActive: Bool
    /// Why the volume counts as all active: "dirty: ...", "corrupt: ...", "unknown", "encrypted",
    /// "hibernated: ..." (NTFS with a hibernation image in hiberfil.sys), "hibernated swap", "unsupported: ...".
    public var reason: String?

    public init(name: String, kind: Kind, scheme: String, partitionType: String?, filesystem: String, offset: UInt64,
                size: UInt64, activeBytes: UInt64, allActive: Bool, reason: String?) {
        self.name = name; self.kind = kind; self.scheme = scheme; self.partitionType = partitionType
        self.filesystem = filesystem; self.offset = offset; self.size = size; self.activeBytes = activeBytes
        self.allActive = allActive; self.reason = reason
    }
}
