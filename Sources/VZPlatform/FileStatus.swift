import Glibc
import VZCore

/// What `fstat` says about an open file: its type and size. Lets a caller refuse a FIFO, a
/// directory or a character device before it reads (a FIFO read blocks forever, `/dev/zero`
/// never ends, a directory fails only at the first read).
public struct FileStatus: Sendable {
    public var mode: mode_t
    /// st_size: bytes of a regular file; not the size of a block device (see `PosixFile.size`).
    public var size: UInt64
    /// st_nlink: a working file with more than one link may be a file outside the root.
    public var linkCount: UInt64

    public var isRegularFile: Bool { mode & S_IFMT == S_IFREG }
    public var isBlockDevice: Bool { mode & S_IFMT == S_IFBLK }

    /// "a directory", "a FIFO", ... for messages.
    public var typeDescription: String {
        switch mode & S_IFMT {
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFSOCK: return "a socket"
        case S_IFLNK: return "a symbolic link"
        default: return "a file of unknown type (mode 0o\(String(mode, radix: 8)))"
        }
    }
}

extension PosixFile {
    /// fstat.
    public func status() throws -> FileStatus {
        let st = try Syscall.fileStatus(fd, path: path, kind: errorKind)
        return FileStatus(mode: st.st_mode, size: UInt64(st.st_size), linkCount: UInt64(st.st_nlink))
    }

    /// Opens `path` read-only without blocking: opening a FIFO that has no writer returns at
    /// once instead of hanging, so the caller can look at `status()` first and then
    /// `clearNonBlocking()` for the reads.
    public static func openForInspection(_ path: String, errorKind: VZError.Kind) throws -> PosixFile {
        try open(path, flags: O_RDONLY | O_NONBLOCK, errorKind: errorKind)
    }

    /// fcntl(F_SETFL) without O_NONBLOCK: reads block (and retry) as usual again.
    public func clearNonBlocking() throws {
        let (flags, e) = Syscall.retrying { fcntl(fd, F_GETFL) }
        guard flags >= 0 else { throw Syscall.error("fcntl(F_GETFL)", path, e, kind: errorKind) }
        let (r, e2) = Syscall.retrying { fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        guard r >= 0 else { throw Syscall.error("fcntl(F_SETFL)", path, e2, kind: errorKind) }
    }
}
