import CVZShims
import Glibc
import VZCore

/// A source disk's folder, held open by descriptor, inside which the files a VMDK names are
/// opened read-only by a single file name with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS):
/// no descriptor can make the source agent read a file outside the disk's folder, through a
/// `..` or a symlink planted beside the disk. Errors are `.sourceIO`.
public final class ReadOnlyFolder: @unchecked Sendable {
    public let fd: Int32
    public let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { Glibc.close(fd) }

    /// Opens the folder itself (from the job file: trusted as given).
    public static func open(_ path: String) throws -> ReadOnlyFolder {
        let (fd, e) = Syscall.retrying { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw Syscall.error("open folder", path, e, kind: .sourceIO) }
        return ReadOnlyFolder(fd: fd, path: path)
    }

    /// Opens the folder `relativePath` below this one (a path of plain components, no "." or
    /// ".."), beneath it: no component may be a symlink (openat2 RESOLVE_BENEATH |
    /// RESOLVE_NO_SYMLINKS). For a chain's link in another folder of a mapped datastore.
    public func subfolder(_ relativePath: String) throws -> ReadOnlyFolder {
        let parts = relativePath.split(separator: "/")
        let full = "\(path)/\(relativePath)"
        guard !parts.isEmpty, !parts.contains(where: { $0 == "." || $0 == ".." }), !relativePath.hasPrefix("/"),
              !relativePath.utf8.contains(0) else {
            throw VZError(.sourceIO, "refusing folder '\(relativePath)' in \(path): not a folder below it")
        }
        let (f, e) = Syscall.retrying { vz_openat_beneath(fd, relativePath, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0) }
        guard f >= 0 else {
            if e == ELOOP || e == EXDEV {
                throw VZError(.sourceIO, "\(full): a symbolic link on the way, or it leaves \(path); refusing to read through it")
            }
            throw Syscall.error("open folder", full, e, kind: .sourceIO)
        }
        return ReadOnlyFolder(fd: f, path: full)
    }

    /// Opens `name` (one path component) for reading; only a regular file or a block device.
    public func open(_ name: String) throws -> PosixFile {
        let full = "\(path)/\(name)"
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.utf8.contains(0) else {
            throw VZError(.sourceIO, "refusing file name '\(name)' in \(path): not a file in the disk's folder")
        }
        // O_NONBLOCK: a FIFO planted in the folder must not block the open.
        let (f, e) = Syscall.retrying { vz_openat_beneath(fd, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC, 0) }
        guard f >= 0 else {
            if e == ELOOP || e == EXDEV {
                throw VZError(.sourceIO, "\(full): is a symbolic link or leaves the disk's folder; refusing to read through it")
            }
            throw Syscall.error("open", full, e, kind: .sourceIO)
        }
        let file = PosixFile(fd: f, path: full, errorKind: .sourceIO)
        let st = try file.status()
        guard st.isRegularFile || st.isBlockDevice else {
            throw VZError(.sourceIO, "\(full) is \(st.typeDescription), not a disk file")
        }
        try file.clearNonBlocking()
        return file
    }
}
