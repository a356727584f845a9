import VZCore

/// The `key = "value"` text of a `.vmx` (VM configuration) or `.vmsd` (snapshot database),
/// VMDK-FORMATS.md §4.4. Keys are case-insensitive (stored lowercased); `#` starts a comment.
/// Every error is `.sourceIO` and names the file and the field.
public struct VMXFile: Equatable, Sendable {
    public var entries: [String: String]
    public let fileName: String

    /// Real ones are a few KiB.
    public static let maxBytes = 1 << 20

    public static func parse(_ bytes: some Collection<UInt8>, fileName: String) throws -> VMXFile {
        guard bytes.count <= maxBytes else {
            throw VZError(.sourceIO, "\(fileName): \(bytes.count) bytes, larger than \(maxBytes): not a VM configuration file")
        }
        guard let text = String(validating: Array(bytes.filter { $0 != 0 }), as: UTF8.self) else {
            throw VZError(.sourceIO, "\(fileName): not UTF-8 text")
        }
        var entries: [String: String] = [:]
        var n = 0
        for raw in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            n += 1
            let line = Substring(raw).trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(".encoding") && !line.contains("=") { continue }
            guard let eq = line.firstIndex(of: "=") else {
                throw VZError(.sourceIO, "\(fileName): line \(n) '\(line.prefix(80))' is not 'key = \"value\"'")
            }
            let key = Substring(line[..<eq]).trimmingSpaces().lowercased()
            let value = Substring(Substring(line[line.index(after: eq)...]).trimmingSpaces()).trimmingCharacters(quote: "\"")
            guard !key.isEmpty else { throw VZError(.sourceIO, "\(fileName): line \(n) has no key") }
            entries[key] = value
        }
        if let enc = entries[".encoding"]?.lowercased(), enc != "utf-8", enc != "utf8" {
            throw VZError(.sourceIO, "\(fileName): field '.encoding': '\(enc)' is not read (UTF-8 only)")
        }
        return VMXFile(entries: entries, fileName: fileName)
    }

    public subscript(_ key: String) -> String? { entries[key.lowercased()] }

    /// The disk file of `node` (`scsi0:0.fileName`), as written; the node must be present and a disk.
    public func diskFileName(node: String) throws -> String {
        guard let name = self["\(node).fileName"], !name.isEmpty else {
            let nodes = entries.keys.filter { $0.hasSuffix(".filename") && $0.contains(":") }
                .map { String($0.dropLast(".filename".count)) }.sorted()
            throw VZError(.sourceIO, "\(fileName): field '\(node).fileName': the VM has no disk at node \(node) (disks: \(nodes.isEmpty ? "none" : nodes.joined(separator: ", ")))")
        }
        if let present = self["\(node).present"], present.lowercased() == "false" {
            throw VZError(.sourceIO, "\(fileName): field '\(node).present' is FALSE: the disk at node \(node) is not attached")
        }
        if let type = self["\(node).deviceType"]?.lowercased(), type.contains("cdrom") || type.contains("atapi") {
            throw VZError(.sourceIO, "\(fileName): field '\(node).deviceType' is '\(type)': node \(node) is not a disk")
        }
        guard name.lowercased().hasSuffix(".vmdk") else {
            throw VZError(.sourceUnsupported, "\(fileName): field '\(node).fileName': '\(name)' is not a VMDK (a raw device mapping or an image of another kind)")
        }
        return name
    }
}

/// A `.vmsd` snapshot database: which snapshot the running state derives from, and per snapshot
/// the disk link frozen when it was taken.
public struct SnapshotDatabase: Equatable, Sendable {
    public struct Snapshot: Equatable, Sendable {
        public var uid: Int
        public var parent: Int?
        public var displayName: String
        /// node -> the disk file frozen by this snapshot (as written).
        public var disks: [String: String]
    }

    public var current: Int?
    public var snapshots: [Snapshot]

    /// More snapshot entries than this are not a real database (ESXi allows 32 per VM... per chain).
    public static let maxSnapshots = 4096

    public static func parse(_ bytes: some Collection<UInt8>, fileName: String) throws -> SnapshotDatabase {
        let f = try VMXFile.parse(bytes, fileName: fileName)
        func int(_ key: String) throws -> Int? {
            guard let v = f[key] else { return nil }
            guard let n = Int(v) else { throw VZError(.sourceIO, "\(fileName): field '\(key)': '\(v)' is not a number") }
            return n
        }
        // snapshotI.* for every I that appears (I is not the uid and may exceed numSnapshots).
        var indices = Set<Int>()
        for key in f.entries.keys where key.hasPrefix("snapshot") {
            let rest = key.dropFirst("snapshot".count)
            let digits = rest.prefix(while: \.isNumber)
            if !digits.isEmpty, rest.dropFirst(digits.count).hasPrefix("."), let i = Int(digits) { indices.insert(i) }
        }
        guard indices.count <= maxSnapshots else {
            throw VZError(.sourceIO, "\(fileName): more than \(maxSnapshots) snapshots")
        }
        var snapshots: [Snapshot] = []
        for i in indices.sorted() {
            let p = "snapshot\(i)"
            guard let uid = try int("\(p).uid") else { throw VZError(.sourceIO, "\(fileName): field '\(p).uid': missing") }
            let numDisks = try int("\(p).numDisks") ?? 0
            guard (0...256).contains(numDisks) else { throw VZError(.sourceIO, "\(fileName): field '\(p).numDisks': \(numDisks)") }
            var disks: [String: String] = [:]
            for j in 0..<numDisks {
                if let node = f["\(p).disk\(j).node"], let file = f["\(p).disk\(j).fileName"] { disks[node.lowercased()] = file }
            }
            snapshots.append(Snapshot(uid: uid, parent: try int("\(p).parent"), displayName: f["\(p).displayName"] ?? "", disks: disks))
        }
        return SnapshotDatabase(current: try int("snapshot.current"), snapshots: snapshots)
    }

    /// The snapshots whose frozen link of `node` is one of `chainFiles` (resolved names, the
    /// running state's chain), and the others: lateral, never read.
    public func classify(node: String, chainFiles: Set<String>, resolve: (String) -> String?) -> (inChain: [Snapshot], lateral: [Snapshot]) {
        var inChain: [Snapshot] = [], lateral: [Snapshot] = []
        for s in snapshots {
            guard let file = s.disks[node.lowercased()] else { continue }
            if let name = resolve(file), chainFiles.contains(name) { inChain.append(s) } else { lateral.append(s) }
        }
        return (inChain, lateral)
    }
}
