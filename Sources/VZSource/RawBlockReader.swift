import Glibc
import VZCore
import VZPlatform

/// A raw image file or a block device, read with pread from any number of threads.
public final class RawBlockReader: BlockReader {
    let file: PosixFile
    let isRegularFile: Bool
    public let capacity: UInt64
    public var displayName: String { file.path }

    /// Opens a raw disk and checks that it can be one, before the target is contacted: see
    /// `inspect` and `checkedCapacity`. Every failure is `.sourceIO` and names the disk (when
    /// given), the path and why. `SourceReaderFactory` decides first whether a source is raw.
    public convenience init(path: String, disk: String? = nil) throws {
        do {
            let (f, st) = try RawBlockReader.inspect(path)
            let capacity = try RawBlockReader.checkedCapacity(f, path: path)
            self.init(file: f, isRegularFile: st.isRegularFile, capacity: capacity)
        } catch let e as VZError {
            throw disk.map { VZError(e.kind, "disk '\($0)': \(e.message)") } ?? e
        }
    }

    /// A file `inspect` opened and whose size `checkedCapacity` accepted.
    init(file: PosixFile, isRegularFile: Bool, capacity: UInt64) {
        self.file = file
        self.isRegularFile = isRegularFile
        self.capacity = capacity
        // Sequential scan: ask the kernel for aggressive read-ahead.
        // Advice only: it returns an error number instead of setting errno, and its failure changes nothing.
        _ = posix_fadvise(file.fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    /// Opens a source for reading when it is a regular file or a block device (never a FIFO,
    /// which would block the open, nor a directory, `/dev/zero` or `/dev/null`) and not empty.
    static func inspect(_ path: String) throws -> (PosixFile, FileStatus) {
        // O_NONBLOCK: opening a FIFO without a writer returns at once; cleared once the type is known.
        let file = try PosixFile.openForInspection(path, errorKind: .sourceIO)
        let st = try file.status()
        guard st.isRegularFile || st.isBlockDevice else {
            throw VZError(.sourceIO, "\(path) is \(st.typeDescription), not a disk: a source must be a raw image file or a block device")
        }
        try file.clearNonBlocking()
        guard try file.size() > 0 else { throw VZError(.sourceIO, "\(path) is empty (0 bytes): there is no disk to replicate") }
        return (file, st)
    }

    /// The size of a raw disk: a whole number of 512-byte sectors.
    static func checkedCapacity(_ file: PosixFile, path: String) throws -> UInt64 {
        let capacity = try file.size()
        guard capacity % JobConfig.sectorSize == 0 else {
            throw VZError(.sourceIO, "\(path) has \(capacity) bytes, not a whole number of \(JobConfig.sectorSize)-byte sectors: not a disk image")
        }
        return capacity
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try file.read(at: offset, into: buffer)
    }

    /// Holes of a sparse image file (SEEK_DATA/SEEK_HOLE); nothing for a block device.
    public func knownZeroExtents() throws -> ExtentSet {
        guard isRegularFile else { return ExtentSet() }
        return try file.holes(below: capacity)
    }
}
