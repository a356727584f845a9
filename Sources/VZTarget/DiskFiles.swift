import VZCore
import VZPlatform

/// Every file name of one disk under its job directory, in one place: the session, recovery,
/// `status`, the journal and the lock all name a disk's files through this value, so what
/// recovery cleans up is exactly what a pass can leave.
///
/// Names of two different valid disks never coincide (NameRules.problem(withDisk:) refuses the
/// suffixes that would make one disk's name another's file; DiskFilesTests proves it over every
/// derived name). Temporary names start with a dot, which no disk name may.
public struct DiskFiles: Hashable, Sendable {
    public let disk: String

    /// `disk` must have passed NameRules (the callers check it where the name enters).
    public init(disk: String) { self.disk = disk }

    /// The replica's text descriptor (createType "vmfs").
    public var descriptor: String { "\(disk).vmdk" }
    /// The replica's data (a sparse flat extent).
    public var flat: String { "\(disk)-flat.vmdk" }
    /// Block hashes of the committed replica; its rename is a pass's commit point.
    public var map: String { "\(disk).vzmap" }
    /// The undo journal of an unfinished pass.
    public var journal: String { "\(disk).vzundo" }
    /// The CID record (issue: VMDK).
    public var cidRecord: String { "\(disk).vzcid" }
    /// The last committed pass's record, for `status` (Docs/formats.md §7).
    public var passRecord: String { "\(disk).vzpass" }
    /// The session lock.
    public var lock: String { "\(disk).vzlock" }

    /// A seed's data file while it is created and sized, before it is renamed to `flat`.
    public var flatSeed: String { Directory.temporaryName(for: flat) }
    public var descriptorTemp: String { Directory.temporaryName(for: descriptor) }
    public var mapTemp: String { Directory.temporaryName(for: map) }
    /// The journal's header is written here, then renamed to `journal`.
    public var journalTemp: String { Directory.temporaryName(for: journal) }
    public var cidRecordTemp: String { Directory.temporaryName(for: cidRecord) }
    public var passRecordTemp: String { Directory.temporaryName(for: passRecord) }
    /// This disk's temp name for the job's shared `vzundo-script`. Not `.vzundo-script.DISK.tmp`:
    /// that is disk `vzundo-script`'s journal temp when DISK is `vzundo` (DiskFilesTests found it).
    /// Ending in the disk name, it could only equal another disk's temp (all end in `.tmp`) if the
    /// disk name ended in `.tmp`, which NameRules refuses.
    public var scriptTemp: String { ".\(RollbackScript.fileName).tmp.\(disk)" }

    /// The files a crash can leave half-made: removed by recovery, never meaningful.
    public var temporaries: [String] { [flatSeed, descriptorTemp, mapTemp, journalTemp, cidRecordTemp, passRecordTemp, scriptTemp] }
    /// The files a committed or unfinished pass keeps.
    public var permanent: [String] { [descriptor, flat, map, journal, cidRecord, passRecord, lock] }
    /// Every name this disk may own.
    public var all: [String] { permanent + temporaries }

    /// The disk that owns the file `name` of a job directory, or nil when no valid disk name
    /// derives it (the job's `vzundo-script`, a stranger's file).
    public static func disk(owning name: String) -> String? {
        var candidates: [String] = []
        let body = name.hasPrefix(".") ? String(name.dropFirst()) : name
        for suffix in ["-flat.vmdk.tmp", ".vmdk.tmp", ".vzmap.tmp", ".vzundo.tmp", ".vzcid.tmp", ".vzpass.tmp",
                       "-flat.vmdk", ".vmdk", ".vzmap", ".vzundo", ".vzcid", ".vzpass", ".vzlock"] where body.hasSuffix(suffix) {
            candidates.append(String(body.dropLast(suffix.count)))
        }
        let scriptPrefix = ".\(RollbackScript.fileName).tmp."
        if name.hasPrefix(scriptPrefix) { candidates.append(String(name.dropFirst(scriptPrefix.count))) }
        return candidates.first { NameRules.problem(withDisk: $0) == nil && DiskFiles(disk: $0).all.contains(name) }
    }

    /// The disks that own any file of a job directory's listing, sorted.
    public static func disks(in names: [String]) -> [String] {
        Array(Set(names.compactMap(disk(owning:)))).sorted()
    }
}
