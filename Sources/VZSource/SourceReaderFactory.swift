import Foundation
import VZCore
import VZFormats
import VZPlatform

/// A source disk as the agent replicates it: its reader, what `disk-started` says about it, and
/// lines for the log.
public struct SourceDisk {
    public var reader: BlockReader
    public var eventFields: [String: Any] = [:]
    public var notes: [String] = []
    /// The VMDK files' access, for tests that prove which files were opened.
    var access: AnyObject?
}

extension VMDKChain {
    /// `chain` of `disk-started`: each link, leaf first.
    var eventField: [[String: Any]] {
        chainDescription.map { ["file": $0.file, "cid": String(format: "%08x", $0.cid), "parentCID": String(format: "%08x", $0.parentCID)] }
    }
    var note: String {
        "reading \(displayName): " + chainDescription.map { "\($0.file) (CID \(String(format: "%08x", $0.cid)))" }.joined(separator: " -> ")
    }
}

extension String {
    func ifEmpty(_ other: String) -> String { isEmpty ? other : self }
}

/// Builds the reader of a job disk's `source`, before the target is contacted: a raw image or a
/// block device, a VMDK (a descriptor, the leaf of a chain, or a sparse file with its descriptor
/// embedded), and refuses the containers it does not read (qcow2, VHD, VHDX, VDI) instead of
/// replicating their container bytes as if they were the disk. `"format": "raw"` reads any
/// source as raw bytes; `"format": "vmdk"` insists on a VMDK.
public enum SourceReaderFactory {
    /// What the first (and last) bytes of a source say it is.
    public enum Sniffed: Equatable, Sendable {
        case raw, vmdk
        case unsupported(String)
    }

    /// `datastores`: the job's mapping of datastore names to mounts, for chain links outside the
    /// disk's folder (Docs/vmdk.md).
    public static func open(_ disk: JobConfig.DiskConfig, datastores: [String: String] = [:]) throws -> SourceDisk {
        do {
            let mapped = DatastoreFolderOpener.resolved(datastores)
            if let node = disk.node { return try openVM(disk.source, node: node, datastores: mapped) }
            let (reader, access) = try openUnlabelled(disk, datastores: mapped)
            guard let chain = reader as? VMDKChain else { return SourceDisk(reader: reader) }
            return SourceDisk(reader: chain, eventFields: ["chain": chain.eventField], notes: [chain.note], access: access)
        } catch let e as VZError {
            throw VZError(e.kind, "disk '\(disk.name)': \(e.message)")
        }
    }

    /// A VM's disk: the `.vmx`'s `NODE.fileName` is the running state's leaf; its chain is read,
    /// and the `.vmsd` says which snapshots are in that chain and which are lateral (never opened).
    static func openVM(_ vmxPath: String, node: String, datastores: VMDKDatastores = VMDKDatastores()) throws -> SourceDisk {
        let real = URL(fileURLWithPath: vmxPath).resolvingSymlinksInPath().path
        let vmFolderPath = (real as NSString).deletingLastPathComponent
        let vmxName = (real as NSString).lastPathComponent
        let vmFolder = try Directory.openSourceFolder(vmFolderPath)
        let vmx = try VMXFile.parse(try readSmall(vmFolder, vmxName, max: VMXFile.maxBytes), fileName: vmxName)
        let written = try vmx.diskFileName(node: node)
        // Relative: in the VM's folder (or below it); absolute: a disk on another datastore, read
        // from its mount when the job maps that datastore.
        let diskPath: String
        if let (mount, rest) = datastores.translate(written) {
            diskPath = VMDKNames.normalize(mount + "/" + rest)
            guard diskPath.hasPrefix(mount + "/") else {
                throw VZError(.sourceIO, "\(vmxName): field '\(node).fileName': '\(written)' leaves the datastore it names (mapped to \(mount))")
            }
        } else {
            diskPath = written.hasPrefix("/") ? written : vmFolderPath + "/" + written
        }
        let (chain, access) = try openVMDKWithAccess(diskPath, datastores: datastores)
        var fields: [String: Any] = ["chain": chain.eventField, "node": node]
        var notes = [chain.note]
        let vmsdName = (vmxName as NSString).deletingPathExtension + ".vmsd"
        let vmsdBytes: [UInt8]?
        do { vmsdBytes = try readSmall(vmFolder, vmsdName, max: VMXFile.maxBytes) } catch let e as VZError {
            // No snapshot database: no snapshots to report. Any other failure is the file's.
            if FileManager.default.fileExists(atPath: vmFolderPath + "/" + vmsdName) { throw e }
            vmsdBytes = nil
        }
        if let bytes = vmsdBytes {
            let db = try SnapshotDatabase.parse(bytes, fileName: vmsdName)
            let files = Set(chain.chainDescription.map(\.file))
            let (inChain, lateral) = db.classify(node: node, chainFiles: files) { name in
                (try? VMDKNames.resolveParent(name, childFolder: chain.folder, datastores: datastores, field: "fileName", in: vmsdName))
                    .map { chain.describe($0.folder, $0.name) }
            }
            func describe(_ s: SnapshotDatabase.Snapshot) -> [String: Any] {
                ["uid": s.uid, "name": s.displayName, "file": s.disks[node.lowercased()] ?? ""]
            }
            fields["snapshots"] = ["current": db.current.map { $0 as Any } ?? NSNull(), "inChain": inChain.map(describe), "lateral": lateral.map(describe)]
            notes.append("snapshots in the chain: \(inChain.map { "\($0.uid) '\($0.displayName)'" }.joined(separator: ", ").ifEmpty("none")); "
                         + "lateral, not read: \(lateral.map { "\($0.uid) '\($0.displayName)' (\($0.disks[node.lowercased()] ?? ""))" }.joined(separator: ", ").ifEmpty("none"))")
        }
        return SourceDisk(reader: chain, eventFields: fields, notes: notes, access: access)
    }

    private static func readSmall(_ folder: Directory, _ name: String, max: Int) throws -> [UInt8] {
        guard let bytes = try folder.readFile(name, maxSize: max) else {
            throw Syscall.error("open", "\(folder.path)/\(name)", ENOENT, kind: .sourceIO)
        }
        return bytes
    }

    static func openUnlabelled(_ disk: JobConfig.DiskConfig, datastores: VMDKDatastores = VMDKDatastores()) throws -> (BlockReader, FolderFileAccess?) {
        let path = disk.source
        let (file, st) = try RawBlockReader.inspect(path)
        if disk.format == .raw {
            return (RawBlockReader(file: file, isRegularFile: st.isRegularFile, capacity: try RawBlockReader.checkedCapacity(file, path: path)), nil)
        }
        let size = try file.size()
        let head = try readUpTo(file, at: 0, count: 4096, size: size)
        let tail = size >= 512 ? try readUpTo(file, at: size - 512, count: 512, size: size) : []
        let kind = sniff(head: head, tail: tail)
        switch (kind, disk.format) {
        case (.vmdk, _):
            guard st.isRegularFile else {
                throw VZError(.sourceUnsupported, "\(path) is a block device holding a VMDK: copy it to a file in the disk's folder, or give \"format\": \"raw\" to replicate the device's bytes as they are")
            }
            return try openVMDKWithAccess(path, datastores: datastores)
        case (.raw, .vmdk):
            throw VZError(.sourceIO, "\(path): \"format\": \"vmdk\", but the file is neither a VMDK descriptor nor a sparse VMDK")
        case (.raw, _):
            return (RawBlockReader(file: file, isRegularFile: st.isRegularFile, capacity: try RawBlockReader.checkedCapacity(file, path: path)), nil)
        case let (.unsupported(what), _):
            throw VZError(.sourceUnsupported, "\(path) is \(what), a container vzrepl does not read: convert it with 'qemu-img convert -O raw \(path) DISK.raw' (or '-O vmdk'), or give the disk \"format\": \"raw\" if these bytes really are the disk")
        }
    }

    /// Opens the VMDK at `path` in its folder (symlinks in the path itself are resolved first,
    /// so its siblings are looked up where it really is).
    static func openVMDK(_ path: String) throws -> VMDKChain { try openVMDKWithAccess(path).0 }

    static func openVMDKWithAccess(_ path: String, datastores: VMDKDatastores = VMDKDatastores()) throws -> (VMDKChain, FolderFileAccess) {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let folderPath = (real as NSString).deletingLastPathComponent
        let name = (real as NSString).lastPathComponent
        let access = FolderFileAccess(folder: try Directory.openSourceFolder(folderPath.isEmpty ? "/" : folderPath))
        let chain = try VMDKChain(leaf: name, folder: folderPath.isEmpty ? "/" : folderPath, access: access,
                                  datastores: datastores, opener: DatastoreFolderOpener())
        return (chain, access)
    }

    /// Magic numbers: qcow2 `QFI\xfb`, VHDX `vhdxfile`, VHD `conectix` (a copy at the start of
    /// a dynamic VHD, the footer at the end of every VHD), VDI's signature at 64, and VMDK.
    public static func sniff(head: [UInt8], tail: [UInt8]) -> Sniffed {
        func starts(_ magic: [UInt8], at offset: Int = 0, in bytes: [UInt8]) -> Bool {
            bytes.count >= offset + magic.count && Array(bytes[offset..<offset + magic.count]) == magic
        }
        if starts([0x51, 0x46, 0x49, 0xFB], in: head) { return .unsupported("a qcow2 image (QFI\\xfb)") }
        if starts(Array("vhdxfile".utf8), in: head) { return .unsupported("a VHDX image (vhdxfile)") }
        if starts(Array("conectix".utf8), in: head) || starts(Array("conectix".utf8), in: tail) {
            return .unsupported("a VHD image (conectix)")
        }
        if starts([0x7F, 0x10, 0xDA, 0xBE], at: 64, in: head) { return .unsupported("a VirtualBox VDI image") }
        if SparseExtentHeader.hasMagic(head) || VMDKDescriptor.looksLikeDescriptor(head) { return .vmdk }
        // A bare ESXi delta (COWD, SEsparse): VMDKLink refuses it, naming its descriptor as the source.
        if starts(Array("COWD".utf8), in: head) || starts([0xBE, 0xBA, 0xFE, 0xCA, 0, 0, 0, 0], in: head) { return .vmdk }
        return .raw
    }

    private static func readUpTo(_ file: PosixFile, at offset: UInt64, count: Int, size: UInt64) throws -> [UInt8] {
        let n = Int(min(UInt64(count), size - offset))
        var b = [UInt8](repeating: 0, count: n)
        try b.withUnsafeMutableBytes { try file.read(at: offset, into: $0) }
        return b
    }
}
