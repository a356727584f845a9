import Foundation
import VZCore
import VZFormats
import VZPlatform

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

    public static func open(_ disk: JobConfig.DiskConfig) throws -> BlockReader {
        do {
            return try openUnlabelled(disk)
        } catch let e as VZError {
            throw VZError(e.kind, "disk '\(disk.name)': \(e.message)")
        }
    }

    static func openUnlabelled(_ disk: JobConfig.DiskConfig) throws -> BlockReader {
        let path = disk.source
        let (file, st) = try RawBlockReader.inspect(path)
        if disk.format == .raw {
            return RawBlockReader(file: file, isRegularFile: st.isRegularFile, capacity: try RawBlockReader.checkedCapacity(file, path: path))
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
            return try openVMDK(path)
        case (.raw, .vmdk):
            throw VZError(.sourceIO, "\(path): \"format\": \"vmdk\", but the file is neither a VMDK descriptor nor a sparse VMDK")
        case (.raw, _):
            return RawBlockReader(file: file, isRegularFile: st.isRegularFile, capacity: try RawBlockReader.checkedCapacity(file, path: path))
        case let (.unsupported(what), _):
            throw VZError(.sourceUnsupported, "\(path) is \(what), a container vzrepl does not read: convert it with 'qemu-img convert -O raw \(path) DISK.raw' (or '-O vmdk'), or give the disk \"format\": \"raw\" if these bytes really are the disk")
        }
    }

    /// Opens the VMDK at `path` in its folder (symlinks in the path itself are resolved first,
    /// so its siblings are looked up where it really is).
    static func openVMDK(_ path: String) throws -> VMDKChain {
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let folderPath = (real as NSString).deletingLastPathComponent
        let name = (real as NSString).lastPathComponent
        let access = FolderFileAccess(folder: try ReadOnlyFolder.open(folderPath.isEmpty ? "/" : folderPath))
        return try VMDKChain(leaf: name, folder: folderPath.isEmpty ? "/" : folderPath, access: access)
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
        if starts(Array("COWD".utf8), in: head) { return .vmdk }
        return .raw
    }

    private static func readUpTo(_ file: PosixFile, at offset: UInt64, count: Int, size: UInt64) throws -> [UInt8] {
        let n = Int(min(UInt64(count), size - offset))
        var b = [UInt8](repeating: 0, count: n)
        try b.withUnsafeMutableBytes { try file.read(at: offset, into: $0) }
        return b
    }
}
