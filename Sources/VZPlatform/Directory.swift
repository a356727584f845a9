import CVZShims
import Glibc
import VZCore

/// A directory held open by descriptor, inside which files are named by a single component. The
/// target reaches everything through a `Directory` opened beneath the datastore root with
/// openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so no name from the wire and no symlink
/// planted in the datastore can make it open a file outside the root.
public final class Directory: @unchecked Sendable {
    public let fd: Int32
    public let path: String

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    deinit { Syscall.close(fd) }

    /// Opens the datastore root itself (a path from the operator, trusted).
    public static func openRoot(_ path: String) throws -> Directory {
        let (fd, e) = Syscall.retrying { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw Syscall.error("open datastore root", path, e, kind: .replicaIO) }
        return Directory(fd: fd, path: path)
    }

    /// Opens a working directory given as an absolute path (from a job file, trusted), making it
    /// and any missing parents first (mode 0750), like `mkdir -p`. Errors are `errorKind`.
    public static func openCreating(_ path: String, errorKind: VZError.Kind) throws -> Directory {
        guard path.hasPrefix("/") else { throw VZError(errorKind, "\(path): not an absolute path") }
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            let (r, e) = Syscall.call(.mkdir) { mkdir(prefix, 0o750) }
            if r != 0 && e != EEXIST { throw Syscall.error("mkdir", prefix, e, kind: errorKind) }
        }
        let (fd, e) = Syscall.retrying { Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw Syscall.error("open directory", path, e, kind: errorKind) }
        return Directory(fd: fd, path: path)
    }

    /// One path component, never "." or "..": what reaches here was built from validated names.
    private func checked(_ name: String) throws -> String {
        guard !name.isEmpty, name.utf8.count <= 255, name != ".", name != "..",
              !name.contains("/"), !name.utf8.contains(0) else {
            throw VZError(.pathOutsideRoot, "refusing file name '\(name)' under \(path): not a single path component")
        }
        return name
    }

    /// Opens (and with `create`, first makes) the sub-directory `name`, never through a symlink.
    public func subdirectory(_ name: String, create: Bool) throws -> Directory {
        let name = try checked(name)
        if create {
            let (r, e) = Syscall.call(.mkdir) { mkdirat(fd, name, 0o750) }
            if r != 0 && e != EEXIST { throw Syscall.error("mkdir", "\(path)/\(name)", e, kind: .replicaIO) }
            if r == 0 { try sync() }
        }
        let (sub, e) = Syscall.retrying { vz_openat_beneath(fd, name, O_RDONLY | O_DIRECTORY, 0) }
        guard sub >= 0 else { throw Syscall.error("open directory", "\(path)/\(name)", e, kind: e == ELOOP || e == EXDEV ? .pathOutsideRoot : .replicaIO) }
        return Directory(fd: sub, path: "\(path)/\(name)")
    }

    public func open(_ name: String, flags: Int32, mode: mode_t = 0o640) throws -> PosixFile {
        guard let f = try open(name, flags: flags, mode: mode, missingIsNil: false) else {
            throw VZError(.internal, "open \(path)/\(name): no file and no error")
        }
        return f
    }

    /// nil when the file does not exist.
    public func openIfExists(_ name: String, flags: Int32) throws -> PosixFile? {
        try open(name, flags: flags, mode: 0, missingIsNil: true)
    }

    /// Every file is opened non-blocking (a FIFO planted in place of a working file must not
    /// block the agent in open()), then checked with fstat: only a regular file with one link is
    /// used — a hard link could be a file outside the root, which the agent would write into or
    /// truncate. O_TRUNC is applied only after that check.
    private func open(_ name: String, flags: Int32, mode: mode_t, missingIsNil: Bool) throws -> PosixFile? {
        let name = try checked(name)
        let full = "\(path)/\(name)"
        let openFlags = (flags & ~O_TRUNC) | O_NONBLOCK
        let (f, e) = Syscall.call(flags & O_CREAT != 0 ? .create : nil) { vz_openat_beneath(fd, name, openFlags, mode) }
        if f < 0 && e == ENOENT && missingIsNil { return nil }
        if f < 0 && e == ENXIO {
            throw VZError(.pathOutsideRoot, "\(full): is not a regular file (a FIFO or device); refusing to use it as a working file — remove it")
        }
        guard f >= 0 else { throw Syscall.error("open", full, e, kind: e == ELOOP || e == EXDEV ? .pathOutsideRoot : .replicaIO) }
        let file = PosixFile(fd: f, path: full, errorKind: .replicaIO)
        let st = try file.status()
        guard st.isRegularFile else {
            throw VZError(.pathOutsideRoot, "\(full): is \(st.typeDescription), not a regular file; refusing to use it as a working file — remove it")
        }
        guard st.linkCount == 1 else {
            throw VZError(.pathOutsideRoot, "\(full): has \(st.linkCount) hard links, so it may be a file outside the datastore root; refusing to write through it — remove it (the other links keep their data)")
        }
        let (r, e2) = Syscall.retrying { fcntl(f, F_SETFL, openFlags & ~O_NONBLOCK & ~O_CREAT & ~O_EXCL) }
        guard r >= 0 else { throw Syscall.error("fcntl(F_SETFL)", full, e2, kind: .replicaIO) }
        if flags & O_TRUNC != 0 { try file.truncate(to: 0) }
        return file
    }

    public func exists(_ name: String) -> Bool {
        var st = stat()
        return Syscall.retrying { fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) }.0 == 0
    }

    /// Reads a whole small file, refusing one larger than `maxSize` (never an unbounded allocation).
    public func readFile(_ name: String, maxSize: Int) throws -> [UInt8]? {
        guard let f = try openIfExists(name, flags: O_RDONLY) else { return nil }
        let size = try f.size()
        guard size <= UInt64(maxSize) else {
            throw VZError(.replicaIO, "\(f.path): \(size) bytes, more than the \(maxSize) this file may have")
        }
        var bytes = [UInt8](repeating: 0, count: Int(size))
        try bytes.withUnsafeMutableBytes { try f.read(at: 0, into: $0) }
        return bytes
    }

    /// The temp name `writeAtomically` uses for `name` (a leading dot: never a disk's own name).
    public static func temporaryName(for name: String) -> String { ".\(name).tmp" }

    /// Durably replaces `name` with `bytes`: temp file, write, fsync, rename, fsync the directory.
    public func writeAtomically(_ name: String, _ bytes: [UInt8], mode: mode_t = 0o640) throws {
        let temp = Directory.temporaryName(for: name)
        let f = try open(temp, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: mode)
        try f.write(at: 0, bytes)
        try f.sync()
        f.close()
        try rename(temp, to: name)
        try sync()
    }

    public func rename(_ from: String, to: String) throws {
        let (from, to) = (try checked(from), try checked(to))
        let (r, e) = Syscall.call(.rename) { renameat(fd, from, fd, to) }
        guard r == 0 else { throw Syscall.error("rename \(from) ->", "\(path)/\(to)", e, kind: .replicaIO) }
        DiskActivity.counter.add(1)
    }

    /// Removes `name`; a missing file is not an error (removal is idempotent for recovery).
    /// Returns whether there was a file to remove.
    @discardableResult
    public func remove(_ name: String) throws -> Bool {
        let name = try checked(name)
        guard exists(name) else { return false }
        let (r, e) = Syscall.call(.unlink) { unlinkat(fd, name, 0) }
        guard r == 0 || e == ENOENT else { throw Syscall.error("unlink", "\(path)/\(name)", e, kind: .replicaIO) }
        DiskActivity.counter.add(1)
        return r == 0
    }

    public func sync() throws {
        let (r, e) = Syscall.call(.fsync) { fsync(fd) }
        guard r == 0 else { throw Syscall.error("fsync directory", path, e, kind: .replicaIO) }
        DiskActivity.counter.add(1)
    }

    /// Names of the entries (not "." and ".."), sorted.
    public func entries() throws -> [String] {
        let dupfd = Syscall.retrying { dup(fd) }.0
        guard dupfd >= 0, let dir = fdopendir(dupfd) else { throw Syscall.error("opendir", path, errno, kind: .replicaIO) }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// Free bytes on the file system holding this directory (for the preflight space check).
    public func freeBytes() throws -> UInt64 {
        var s = statvfs()
        let (r, e) = Syscall.retrying { fstatvfs(fd, &s) }
        guard r == 0 else { throw Syscall.error("fstatvfs", path, e, kind: .replicaIO) }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }
}
