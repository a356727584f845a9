/// Job and disk names become directory and file names on the target: a strict alphabet keeps
/// every name from the wire inside the datastore root, and the reserved suffixes keep the files
/// of one disk from ever being the files of another.
///
/// Why the suffixes: a disk's files are `D.vmdk`, `D-flat.vmdk`, `D.vzmap`, ... (DiskFiles). A disk
/// named `X-flat` would have the descriptor `X-flat.vmdk`, which is disk `X`'s data file. Of the
/// derived suffixes only `-flat.vmdk` ends with another one (`.vmdk`), so refusing names that end
/// in `-flat` makes the derived names of two different disks disjoint. The other ESXi file
/// suffixes (`-delta`, `-sesparse`, `-ctk`, `-rdm`, `-rdmp`, `-s001`...) are refused too, so that
/// no replica file looks to ESXi like a snapshot, a CBT map or an RDM of another disk, and names
/// ending in one of our own file extensions are refused so a listing cannot be misread.
/// Compared case-insensitively (other datastores are).
public enum NameRules {
    /// Disk-name endings that are refused (lowercase).
    public static let reservedDiskSuffixes = ["-flat", "-delta", "-sesparse", "-ctk", "-rdm", "-rdmp",
                                              ".vmdk", ".vzmap", ".vzundo", ".vzcid", ".vzpass", ".vzlock", ".tmp", ".vztemp"]

    /// Why `name` cannot be a job or disk name, or nil. The alphabet and length rules only: what
    /// every name read back from the datastore (a journal header) must satisfy.
    public static func problem(with name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 64 { return "'\(name)' is longer than 64 bytes" }
        if name == "." || name == ".." || name.contains("..") { return "'\(name)' contains '..'" }
        if name.contains("/") { return "'\(name)' contains '/'" }
        if name.hasPrefix(".") || name.hasPrefix("-") { return "'\(name)' starts with '\(name.first!)'" }
        for u in name.unicodeScalars {
            let ok = (u >= "a" && u <= "z") || (u >= "A" && u <= "Z") || (u >= "0" && u <= "9") || u == "-" || u == "_" || u == "."
            if !ok { return "'\(name)' has the character '\(u)' (allowed: letters, digits, '-', '_', '.')" }
        }
        return nil
    }

    /// Why `name` cannot be a new disk's name, or nil: the rules above plus the reserved suffixes.
    public static func problem(withDisk name: String) -> String? {
        if let why = problem(with: name) { return why }
        let lower = name.lowercased()
        if let suffix = reservedDiskSuffixes.first(where: { lower.hasSuffix($0) }) {
            return "'\(name)' ends with '\(suffix)', which is reserved for the files of a disk (a disk '\(name)' could overwrite another disk's replica); choose another name"
        }
        if let r = lower.range(of: "-s", options: .backwards), lower[r.upperBound...].count == 3,
           lower[r.upperBound...].allSatisfy({ $0.isASCII && $0.isNumber }) {
            return "'\(name)' ends like an ESXi extent file (-sNNN); choose another name"
        }
        return nil
    }
}
