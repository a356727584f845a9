import Foundation
import VZCore
import VZFormats
import VZPlatform

/// Opens the folders of chain links that live outside the disk's folder, inside a datastore the
/// job maps (`datastores`): the mount is opened as the operator gave it (symlinks in its path
/// resolved first, like a disk's `source`), the folder beneath it with no symlink on the way.
/// Keeps every access it made, so tests can see which files were opened.
final class DatastoreFolderOpener: VMDKFolderOpener {
    private(set) var accesses: [String: FolderFileAccess] = [:]

    func access(folder: String, beneath mount: String) throws -> VMDKFileAccess {
        if let a = accesses[folder] { return a }
        let root = try Directory.openSourceFolder(mount)
        let relative = folder == mount ? "" : String(folder.dropFirst(mount.count + 1))
        let a = FolderFileAccess(folder: relative.isEmpty ? root : try root.subdirectory(atPath: relative))
        accesses[folder] = a
        return a
    }

    /// The job's mapping with each mount's symlinks resolved (so it compares with the resolved
    /// folder of a disk, e.g. ESXi's `/vmfs/volumes/ds1` → `/vmfs/volumes/<uuid>`).
    static func resolved(_ datastores: [String: String]) -> VMDKDatastores {
        VMDKDatastores(datastores.mapValues { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path })
    }
}
