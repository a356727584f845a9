import Glibc
import VZCore
import VZPlatform

/// A raw image file or a block device, read with pread from any number of threads.
public final class RawBlockReader: BlockReader {
    let file: PosixFile
    public let capacity: UInt64
    public var displayName: String { file.path }

    public init(path: String) throws {
        file = try PosixFile.open(path, flags: O_RDONLY, errorKind: .sourceIO)
        capacity = try file.size()
        // Sequential scan: ask the kernel for aggressive read-ahead.
        _ = posix_fadvise(file.fd, 0, 0, POSIX_FADV_SEQUENTIAL)
    }

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try file.read(at: offset, into: buffer)
    }

    /// Holes of a sparse image file (SEEK_DATA/SEEK_HOLE); nothing for a block device.
    public func knownZeroExtents() throws -> ExtentSet {
        var st = stat()
        guard fstat(file.fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return ExtentSet() }
        return try file.holes(below: capacity)
    }
}
