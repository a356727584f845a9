import VZCore

/// The job's `datastores` mapping (Docs/job-file.md): ESXi datastore names (or UUIDs) to the
/// folders where the source VA sees them mounted, e.g. `ds1` → `/mnt/ds1`. A snapshot chain may
/// have links in another folder (a linked clone's base on another datastore): such a link is
/// read only when it lies inside one of these mounts, and an ESXi absolute path
/// `/vmfs/volumes/<name>/…` of a mapped name is read from the mount. Pure: paths are compared
/// lexically; the caller resolves the mounts' own symlinks first and opens files beneath them.
public struct VMDKDatastores: Equatable, Sendable {
    /// Name → mount (absolute, normalised, no trailing slash).
    public private(set) var mounts: [String: String]

    public static let esxiPrefix = "/vmfs/volumes/"

    public init(_ mounts: [String: String] = [:]) {
        self.mounts = mounts.mapValues { VMDKNames.normalize($0) }
    }

    public var isEmpty: Bool { mounts.isEmpty }

    /// `ds1 → /mnt/ds1, ds2 → /mnt/ds2`, for messages.
    public var summary: String { mounts.sorted { $0.key < $1.key }.map { "\($0.key) → \($0.value)" }.joined(separator: ", ") }

    /// For `/vmfs/volumes/<name>/rest` with `name` mapped: the mount and `rest`.
    public func translate(_ path: String) -> (mount: String, rest: String)? {
        guard path.hasPrefix(VMDKDatastores.esxiPrefix) else { return nil }
        let after = path.dropFirst(VMDKDatastores.esxiPrefix.count)
        let name = after.prefix { $0 != "/" }
        guard let mount = mounts[String(name)] else { return nil }
        return (mount, String(after.dropFirst(name.count)))
    }

    /// The longest mount that holds `folder` (the folder itself, or below it).
    public func mount(containing folder: String) -> String? {
        let f = VMDKNames.normalize(folder)
        return mounts.values.filter { m in f == m || f.hasPrefix(m == "/" ? "/" : m + "/") }.max { $0.count < $1.count }
    }
}

/// Opens the files of a folder inside a mapped datastore (a chain's link outside the disk's
/// folder), implemented above this layer: beneath the mount, never through a symlink.
public protocol VMDKFolderOpener: AnyObject {
    func access(folder: String, beneath mount: String) throws -> VMDKFileAccess
}
