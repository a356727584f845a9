import CVZShims
import Glibc
import VZCore

/// An open file descriptor with whole-buffer positional I/O. Every call goes through `Syscall`
/// (EINTR, errors naming the file, fault injection). Thread-safe for concurrent pread/pwrite.
public final class PosixFile: @unchecked Sendable {
    public let fd: Int32
    public let path: String
    /// The error kind reads and writes of this file fail with (sourceIO on the source side,
    /// replicaIO on the target).
    public let errorKind: VZError.Kind
    private var closed = false

    public init(fd: Int32, path: String, errorKind: VZError.Kind) {
        self.fd = fd
        self.path = path
        self.errorKind = errorKind
    }

    /// Opens a path as given (the source side, and read-only use). The target opens through
    /// `DatastoreRoot` instead, which never leaves its root.
    public static func open(_ path: String, flags: Int32, mode: mode_t = 0o644, errorKind: VZError.Kind) throws -> PosixFile {
        let (fd, e) = Syscall.call(flags & O_CREAT != 0 ? .create : nil) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        guard fd >= 0 else { throw Syscall.error("open", path, e, kind: errorKind) }
        return PosixFile(fd: fd, path: path, errorKind: errorKind)
    }

    deinit { close() }

    public func close() {
        if !closed { closed = true; Syscall.close(fd) }
    }

    /// Size in bytes: st_size for a file, BLKGETSIZE64 for a block device.
    public func size() throws -> UInt64 {
        let st = try status()
        if st.isBlockDevice {
            let (n, e2) = Syscall.retrying { vz_block_device_size(fd) }
            guard n >= 0 else { throw Syscall.error("ioctl(BLKGETSIZE64)", path, e2, kind: errorKind) }
            return UInt64(n)
        }
        return st.size
    }

    /// Reads exactly `buffer.count` bytes at `offset`; a short file is an error naming the offset.
    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let (n, e) = Syscall.call(.read) {
                pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n < 0 { throw Syscall.error("pread at offset \(offset + UInt64(done)) of", path, e, kind: errorKind) }
            if n == 0 {
                throw VZError(errorKind, "pread \(path): end of file at offset \(offset + UInt64(done)), \(buffer.count - done) bytes short")
            }
            done += n
        }
        DiskActivity.counter.add(UInt64(buffer.count))
    }

    public func write(at offset: UInt64, _ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let (n, e) = Syscall.call(.write) {
                pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            }
            if n < 0 { throw Syscall.error("pwrite at offset \(offset + UInt64(done)) of", path, e, kind: errorKind) }
            done += n
        }
        DiskActivity.counter.add(UInt64(bytes.count))
    }

    public func write(at offset: UInt64, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(at: offset, $0) }
    }

    /// fsync. A failure is final: the caller fails the pass and never retries (the kernel may
    /// already have dropped the dirty pages).
    public func sync() throws {
        let (r, e) = Syscall.call(.fsync) { fsync(fd) }
        guard r == 0 else { throw Syscall.error("fsync", path, e, kind: errorKind) }
        DiskActivity.counter.add(1)
    }

    /// Starts writing the extent's dirty pages to the medium and returns without waiting
    /// (sync_file_range, SYNC_FILE_RANGE_WRITE), so the next `sync` finds little left to write.
    /// Not a durable step and not a substitute for `sync`: the kernel may write dirty pages back
    /// at any time anyway. A file system that cannot do it (EINVAL, ESPIPE, ENOSYS, EOPNOTSUPP)
    /// is left to write back on its own; an I/O error fails the pass as a write error would.
    public func startWriteback(_ extent: Extent) throws {
        let (r, e) = Syscall.call(.writeback) { vz_start_writeback(fd, Int64(extent.offset), Int64(extent.length)) }
        guard r != 0 else { return }
        if [EINVAL, ESPIPE, ENOSYS, EOPNOTSUPP].contains(e) { return }
        throw Syscall.error("sync_file_range(WRITE) \(extent) of", path, e, kind: errorKind)
    }

    public func truncate(to size: UInt64) throws {
        let (r, e) = Syscall.call(.truncate) { ftruncate(fd, off_t(size)) }
        guard r == 0 else { throw Syscall.error("ftruncate to \(size) bytes", path, e, kind: errorKind) }
    }

    /// Deallocates the extent so it reads as zeros (a hole); the file size is kept.
    public func punchHole(_ extent: Extent) throws {
        let (r, e) = Syscall.call(.punch) { vz_punch_hole(fd, Int64(extent.offset), Int64(extent.length)) }
        guard r == 0 else { throw Syscall.error("fallocate(PUNCH_HOLE) \(extent) of", path, e, kind: errorKind) }
        DiskActivity.counter.add(1)
    }

    /// The first data at or after `offset`, or nil when only a hole follows (SEEK_DATA).
    public func nextData(from offset: UInt64) throws -> UInt64? {
        let (r, e) = Syscall.retrying { vz_seek_data(fd, Int64(offset)) }
        if r < 0 {
            if e == ENXIO { return nil }
            throw Syscall.error("lseek(SEEK_DATA, \(offset))", path, e, kind: errorKind)
        }
        return UInt64(r)
    }

    /// The first hole at or after `offset` (the end of file counts as a hole), SEEK_HOLE.
    public func nextHole(from offset: UInt64) throws -> UInt64 {
        let (r, e) = Syscall.retrying { vz_seek_hole(fd, Int64(offset)) }
        guard r >= 0 else { throw Syscall.error("lseek(SEEK_HOLE, \(offset))", path, e, kind: errorKind) }
        return UInt64(r)
    }

    /// Extents of `[0, limit)` that are holes, found with SEEK_DATA/SEEK_HOLE.
    public func holes(below limit: UInt64) throws -> ExtentSet {
        var set = ExtentSet()
        var pos: UInt64 = 0
        while pos < limit {
            guard let data = try nextData(from: pos) else {
                set.insert(Extent(offset: pos, length: limit - pos))
                break
            }
            if data > pos { set.insert(Extent(offset: pos, length: Swift.min(data, limit) - pos)) }
            if data >= limit { break }
            pos = try nextHole(from: data)
        }
        return set
    }
}
