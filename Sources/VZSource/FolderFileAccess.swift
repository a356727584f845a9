import Foundation
import VZCore
import VZFormats
import VZPlatform

/// The VMDK readers' I/O (`VMDKFileAccess`) over one disk folder: every file is opened once, by
/// name, beneath the folder (a `.sourceFolder` `Directory`: no `..`, no symlinks), and read with
/// pread from any number of threads.
final class FolderFileAccess: VMDKFileAccess, @unchecked Sendable {
    let folder: Directory
    private var files: [String: PosixFile] = [:]
    private let lock = NSLock()
    /// Every name opened, in order (tests prove a lateral snapshot's link is never opened).
    private(set) var opened: [String] = []

    init(folder: Directory) { self.folder = folder }

    private func file(_ name: String) throws -> PosixFile {
        lock.lock()
        defer { lock.unlock() }
        if let f = files[name] { return f }
        let f = try folder.open(name, flags: O_RDONLY)
        files[name] = f
        opened.append(name)
        return f
    }

    func size(of name: String) throws -> UInt64 { try file(name).size() }

    func read(_ name: String, at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try file(name).read(at: offset, into: buffer)
    }

    func holes(of name: String, below limit: UInt64) throws -> ExtentSet {
        let f = try file(name)
        guard try f.status().isRegularFile else { return ExtentSet() }
        return try f.holes(below: limit)
    }

    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, context: String) throws -> Int {
        try Inflate.decompress(input, into: output, context: context, errorKind: .sourceIO)
    }
}
